/* The configuration loader against the pretrain and finetune schemas: every malformed case from a table (each
 * error must name file:line:col or the override, and the key path), then defaults, overrides,
 * the YAML round trip, the "#" print and the documentation of every key.
 * Usage: test_config DOCS_CONFIG_MD */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config/finetune.h"
#include "config/pretrain.h"

static char g_dir[] = "/tmp/tw_test_config_XXXXXX";

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f)) {
        perror(path);
        exit(1);
    }
}

/* One bad input. '@' in an expected fragment stands for the YAML file's path. */
typedef struct bad_case {
    const char *name;
    const char *yaml;            /* NULL: no file */
    const char *override;        /* NULL: none */
    int no_shards;               /* 1: do not add the data.shards override every other case gets */
    const char *want[3];         /* fragments the message must contain */
} bad_case;

static const bad_case bad_cases[] = {
    {"unknown key", "optim:\n  lrr: 0.1\n", NULL, 0,
     {"@:2:3: optim.lrr: unknown key", "did you mean optim.lr?"}},
    {"unknown section", "data:\n  batch: 8\noptimm:\n  lr: 1\n", NULL, 0, {"@:3:1: optimm: unknown key (did you mean optim?)"}},
    {"unknown nested key", "augment:\n  view2:\n    blurr: 0.5\n", NULL, 0,
     {"@:3:5: augment.view2.blurr: unknown key", "(did you mean augment.view2.blur?)"}},
    {"duplicate key", "optim:\n  lr: 0.1\n  lr: 0.2\n", NULL, 0,
     {"@:3:3: optim.lr: duplicate key", "line 2, column 3"}},
    {"duplicate section", "optim:\n  lr: 0.1\ndata:\n  batch: 4\noptim:\n  eps: 1e-6\n", NULL, 0,
     {"@:5:1: optim: duplicate key", "line 1, column 1"}},
    {"duplicate, nested and dotted", "optim:\n  lr: 0.1\noptim.lr: 0.2\n", NULL, 0,
     {"@:3:1: optim.lr: duplicate key (first given at @:2:7)"}},
    {"duplicate, dotted section", "augment.view1:\n  crop: 0.5\naugment:\n  view1: {crop: 0.4}\n", NULL, 0,
     {"@:4:11: augment.view1.crop: duplicate key (first given at @:2:9)"}},
    {"word for an integer", "data:\n  batch: abc\n", NULL, 0, {"@:2:10: data.batch: expected integer", "got abc"}},
    {"fraction for an integer", "data:\n  batch: 2.5\n", NULL, 0, {"@:2:10: data.batch: expected integer", "got 2.5"}},
    {"quoted number", "optim:\n  lr: \"0.1\"\n", NULL, 0, {"@:2:7: optim.lr: expected number", "quoted string"}},
    {"negative lr", "optim:\n  lr: -1\n", NULL, 0, {"@:2:7: optim.lr: must be > 0, got -1"}},
    {"zero lr", "optim:\n    lr: 0\n", NULL, 0, {"@:2:9: optim.lr: must be > 0, got 0"}},
    {"probability above 1", "augment:\n  view2:\n    blur: 1.5\n", NULL, 0,
     {"@:3:11: augment.view2.blur: must be in [0, 1], got 1.5"}},
    {"batch below 2", "data: {batch: 1}\n", NULL, 0, {"@:1:15: data.batch: must be in [2, 1048576], got 1"}},
    {"integer overflow", "data:\n  batch: 99999999999\n", NULL, 0, {"@:2:10: data.batch: must be", "too large"}},
    {"nan", "optim:\n  lr: nan\n", NULL, 0, {"@:2:7: optim.lr: expected number", "finite"}},
    {"null for a number", "optim:\n  lr:\n  eps: 1e-8\n", NULL, 0, {"@:2:6: optim.lr: expected number", "got null"}},
    {"bad enum", "optim:\n  name: adan\n", NULL, 0,
     {"@:2:9: optim.name: expected one of adam|adamw|lars|sgd, got adan"}},
    {"enum case", "backend:\n  device: CPU\n", NULL, 0, {"@:2:11: backend.device: expected one of cpu|cuda"}},
    {"yes for a boolean", "optim:\n  nesterov: yes\n", NULL, 0, {"@:2:13: optim.nesterov: expected boolean", "got yes"}},
    {"betas too short", "optim:\n  betas: [0.9]\n", NULL, 0, {"@:2:10: optim.betas: expected a list of 2", "got a list of 1"}},
    {"betas out of range", "optim:\n  betas: [0.9, 1.0]\n", NULL, 0,
     {"@:2:10: optim.betas: element 1: must be in [0, 1), got 1.0"}},
    {"betas as a scalar", "optim:\n  betas: 0.9\n", NULL, 0, {"@:2:10: optim.betas: expected a list of 2", "got 0.9"}},
    {"section given a value", "optim: 3\n", NULL, 0, {"@:1:8: optim: is a section"}},
    {"value given a mapping", "optim:\n  lr:\n    x: 1\n", NULL, 0, {"@:3:5: optim.lr: expected number", "a mapping"}},
    {"string given a sequence", "run:\n  name: [a, b]\n", NULL, 0, {"@:2:9: run.name: expected a string", "a sequence"}},
    {"unclosed flow sequence", "optim:\n  betas: [0.9, 0.99\n", NULL, 0, {"@:3:1: malformed YAML", "flow sequence"}},
    {"tab indentation", "optim:\n\tlr: 0.1\n", NULL, 0, {"@:2:1: malformed YAML", "tab"}},
    {"bad indentation", "optim:\n  lr: 0.1\n eps: 0.1\n", NULL, 0, {"@:3:2: malformed YAML", "did not find expected key"}},
    {"invalid UTF-8", "run:\n  name: ab\xff\n", NULL, 0, {"@:2:11: malformed YAML", "UTF-8"}},
    {"sequence at top level", "- a\n- b\n", NULL, 0, {"@:1:1: (top level): expected a mapping"}},
    {"two documents", "data:\n  batch: 8\n---\ndata:\n  batch: 9\n", NULL, 0, {"@:4:1: (document)", "second"}},
    {"mapping as a key", "? {a: 1}\n: 2\n", NULL, 0, {"@:1:3: (top level): keys must be plain names"}},
    {"warm-up too long", "optim:\n  epochs: 10\n  warmup_epochs: 20\n", NULL, 0,
     {"@:3:18: optim.warmup_epochs: must be below optim.epochs (10), got 20"}},
    {"warm-up too long, default", "optim:\n  epochs: 5\n", NULL, 0,
     {"@: optim.warmup_epochs: must be below optim.epochs (5), got 10"}},
    {"blur sigmas swapped", "augment:\n  blur_sigma_min: 3.0\n", NULL, 0, {"@: augment.blur_sigma_max: must be >= augment.blur_sigma_min (3)"}},
    {"required key missing", "optim:\n  lr: 0.1\n", NULL, 1, {"@: data.shards: required key missing", "data.shards=..."}},
    {"required key missing, no file", NULL, NULL, 1, {"(defaults): data.shards: required key missing"}},
    {"override negative lr", NULL, "optim.lr=-1", 0, {"override 'optim.lr=-1': optim.lr: must be > 0, got -1"}},
    {"override unknown key", NULL, "optim.lrr=1", 0,
     {"override 'optim.lrr=1': optim.lrr: unknown key", "did you mean optim.lr?"}},
    {"override of a section", NULL, "optim=1", 0, {"override 'optim=1': optim is a section", "optim.name=..."}},
    {"override without =", NULL, "optim.lr", 0, {"override 'optim.lr': expected key=value"}},
    {"override without key", NULL, "=3", 0, {"override '=3': expected key=value"}},
    {"override malformed value", NULL, "optim.betas=[0.9", 0, {"override 'optim.betas=[0.9': optim.betas: malformed YAML value"}},
    {"override empty value", NULL, "data.batch=", 0, {"override 'data.batch=': data.batch: expected integer", "got null"}},
    {"override bad enum", NULL, "data.source=s3", 0, {"override 'data.source=s3': data.source: expected one of s1|s2"}},
    {"override wins over the file, then fails the cross check", "optim:\n  epochs: 100\n", "optim.warmup_epochs=200", 0,
     {"override 'optim.warmup_epochs=200': optim.warmup_epochs: must be below optim.epochs (100)"}},
    {"missing file", "", NULL, 0, {"/nonexistent/x.yaml: cannot open config"}},
};

static void expand(char *out, size_t n, const char *want, const char *path) {
    size_t used = 0;
    for (const char *c = want; *c && used + 1 < n; c++) {
        if (*c == '@') used += (size_t)snprintf(out + used, n - used, "%s", path);
        else out[used++] = *c;
    }
    out[used < n ? used : n - 1] = '\0';
}

static void run_bad_cases(void) {
    char path[256];
    tw_pretrain_cfg cfg;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *bc = &bad_cases[i];
        snprintf(path, sizeof path, "%s/case%02zu.yaml", g_dir, i);
        const char *file = NULL;
        if (bc->yaml && !*bc->yaml) {
            file = "/nonexistent/x.yaml";
        } else if (bc->yaml) {
            write_file(path, bc->yaml);
            file = path;
        }
        char *ov[2];
        int n_ov = 0;
        if (!bc->no_shards) ov[n_ov++] = "data.shards=/data/shards";
        if (bc->override) ov[n_ov++] = (char *)bc->override;
        tw_err err = {0};
        tw_status st = tw_cfg_load(tw_pretrain_schema(), &cfg, file, n_ov, ov, &err);
        CHECK(st != TW_OK, "case '%s': accepted", bc->name);
        if (st == TW_OK) continue;
        for (int w = 0; w < 3 && bc->want[w]; w++) {
            char want[600];
            expand(want, sizeof want, bc->want[w], path);
            CHECK(strstr(err.msg, want), "case '%s': message\n    %s\n  lacks\n    %s", bc->name, err.msg, want);
        }
        printf("ok   %-50s %s\n", bc->name, err.msg);
    }
}

static void test_defaults_and_overrides(void) {
    tw_pretrain_cfg cfg;
    tw_err err = {0};
    char *ov[] = {"data.shards=/data/my shards", "optim.lr=0.5", "optim.lr=0.25", "run.max_steps=7",
                  "optim.betas=[0.8, 0.99]", "augment.view2.noise=0", "optim.nesterov=true"};
    tw_status st = tw_cfg_load(tw_pretrain_schema(), &cfg, NULL, 7, ov, &err);
    CHECK(st == TW_OK, "defaults + overrides: %s", err.msg);
    CHECK(!strcmp(cfg.data.shards, "/data/my shards"), "shards '%s'", cfg.data.shards);
    CHECK(cfg.optim.lr == 0.25, "later override wins: lr %g", cfg.optim.lr);
    CHECK(cfg.run.max_steps == 7, "max_steps %lld", (long long)cfg.run.max_steps);
    CHECK(cfg.optim.betas[0] == 0.8 && cfg.optim.betas[1] == 0.99, "betas");
    CHECK(cfg.augment.view2.noise == 0.0 && cfg.augment.view2.speckle == 0.2, "view2 noise/speckle");
    CHECK(cfg.optim.nesterov == 1, "nesterov");
    /* Defaults the task fixes. */
    CHECK(cfg.model.projector_dim == 2048, "projector_dim");
    CHECK(cfg.loss.lambda == 0.0051, "lambda");
    CHECK(cfg.optim.eta == 0.001 && cfg.optim.warmup_epochs == 10 && cfg.optim.epochs == 1000, "lars/schedule");
    CHECK(cfg.optim.name == TW_OPTIM_ADAM && cfg.optim.schedule == TW_SCHED_COSINE, "optim enums");
    CHECK(cfg.optim.eps == 1e-8 && cfg.optim.momentum == 0.9, "eps/momentum");
    CHECK(cfg.augment.view1.blur == 1.0 && cfg.augment.view2.blur == 0.1, "asymmetric blur");
    CHECK(!strcmp(cfg.run.resume, "auto"), "resume");

    tw_pretrain_cfg def;
    char *ov1[] = {"data.shards=x"};
    st = tw_cfg_load(tw_pretrain_schema(), &def, NULL, 1, ov1, &err);
    CHECK(st == TW_OK && def.run.max_steps == TW_CFG_UNSET, "max_steps defaults to null");
    CHECK(def.optim.nesterov == 0 && def.optim.lr == 1e-3, "nesterov false, lr 1e-3 by default");
}

static const char *full_yaml =
    "# a complete file, every section\n"
    "run:\n  name: s1 run \"quoted\" \\ back\n  out_dir: /tmp/runs\n  seed: 9007199254740993\n"
    "  resume: never\n  log_every: 5\n  ckpt_every_steps: 0\n  max_steps: null\n"
    "data:\n  shards: 'data/shards: one'\n  split: clouds\n  source: s1\n  s2_bands: rgb\n  size: 64\n"
    "  batch: 32\n  prefetch: 0\n"
    "model: {projector_dim: 512, backbone_bn: sync}\n"
    "loss:\n  lambda: 0.0039\n"
    "optim:\n  name: lars\n  lr: 0.2\n  lr_bias_scale: 0.024\n  lr_batch_scale: true\n  weight_decay: 1.5e-6\n"
    "  momentum: 0.9\n  nesterov: false\n  betas: [0.5, 0.75]\n  eps: 1e-6\n  eta: 0.002\n"
    "  warmup_epochs: 0\n  epochs: 3\n  schedule: constant\n  final_lr_ratio: 0.01\n"
    "backend:\n  device: cuda\n  precision: bf16\n  threads: 3\n  comm: nccl\n"
    "augment:\n  view1:\n    crop: 0.9\n    band_dropout: 0.3\n  view2:\n    rot90: 0.0\n"
    "  crop_min_scale: 0.2\n  speckle_looks: 1\n  blur_sigma_max: 3.5\n"
    "augment.view2.flip: 0.25\n";

static void test_full_file_and_round_trip(void) {
    char path[256];
    snprintf(path, sizeof path, "%s/full.yaml", g_dir);
    write_file(path, full_yaml);
    tw_pretrain_cfg a, b;
    tw_err err = {0};
    char *ov[] = {"optim.lr=0.3"};
    tw_status st = tw_cfg_load(tw_pretrain_schema(), &a, path, 1, ov, &err);
    CHECK(st == TW_OK, "full file: %s", err.msg);
    if (st != TW_OK) return;
    CHECK(!strcmp(a.run.name, "s1 run \"quoted\" \\ back"), "name '%s'", a.run.name);
    CHECK(a.run.seed == 9007199254740993LL, "seed is a full int64");
    CHECK(!strcmp(a.data.shards, "data/shards: one"), "single-quoted string '%s'", a.data.shards);
    CHECK(a.data.split == TW_SPLIT_CLOUDS && a.data.source == TW_SOURCE_S1 && a.data.s2_bands == TW_BANDS_RGB, "enums");
    CHECK(a.model.projector_dim == 512 && a.model.backbone_bn == TW_BN_SYNC, "flow mapping");
    CHECK(a.optim.name == TW_OPTIM_LARS && a.optim.lr == 0.3 && a.optim.lr_batch_scale == 1, "optim");
    CHECK(a.optim.weight_decay == 1.5e-6 && a.optim.schedule == TW_SCHED_CONSTANT, "optim 2");
    CHECK(a.backend.device == TW_CFG_DEV_CUDA && a.backend.precision == TW_CFG_PREC_BF16 &&
          a.backend.comm == TW_CFG_COMM_NCCL && a.backend.threads == 3, "backend");
    CHECK(a.augment.view1.crop == 0.9 && a.augment.view1.flip == 0.5 && a.augment.view2.rot90 == 0.0, "augment");
    CHECK(a.augment.view2.flip == 0.25, "a dotted key after its section");

    /* Serialised text reads back to the identical struct (strings with quotes and backslashes,
     * 64-bit seeds, nulls, lists, shortest float text). */
    char *text = tw_cfg_to_yaml(tw_pretrain_schema(), &a);
    st = tw_cfg_load_text(tw_pretrain_schema(), &b, text, "round-trip", 0, NULL, &err);
    CHECK(st == TW_OK, "round trip: %s\n%s", err.msg, text);
    CHECK(!memcmp(&a, &b, sizeof a), "round trip differs:\n%s", text);
    CHECK(strstr(text, "  lr: 0.3\n") && strstr(text, "  lambda: 0.0039\n") &&
          strstr(text, "  max_steps: null\n") && strstr(text, "    band_dropout: 0.3\n"), "serialised text:\n%s", text);
    free(text);

    /* Defaults also round-trip, and a run with max_steps set does too. */
    char *ov2[] = {"data.shards=d", "run.max_steps=0", "loss.lambda=0.1"};
    st = tw_cfg_load(tw_pretrain_schema(), &a, NULL, 3, ov2, &err);
    CHECK(st == TW_OK, "%s", err.msg);
    text = tw_cfg_to_yaml(tw_pretrain_schema(), &a);
    st = tw_cfg_load_text(tw_pretrain_schema(), &b, text, "round-trip", 0, NULL, &err);
    CHECK(st == TW_OK && !memcmp(&a, &b, sizeof a) && b.run.max_steps == 0, "defaults round trip: %s", err.msg);
    free(text);

    /* An empty file and a comment-only file are the defaults. */
    snprintf(path, sizeof path, "%s/empty.yaml", g_dir);
    write_file(path, "# nothing\n");
    st = tw_cfg_load(tw_pretrain_schema(), &b, path, 3, ov2, &err);
    CHECK(st == TW_OK && !memcmp(&a, &b, sizeof a), "comment-only file: %s", err.msg);
}

static int count_occurrences(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static void test_print_help_docs(const char *docs_path) {
    tw_pretrain_cfg cfg;
    tw_err err = {0};
    char *ov[] = {"data.shards=d"};
    if (tw_cfg_load(tw_pretrain_schema(), &cfg, NULL, 1, ov, &err) != TW_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    char *buf = NULL, *help = NULL;
    size_t len = 0, hlen = 0;
    FILE *f = open_memstream(&buf, &len);
    tw_cfg_print(f, tw_pretrain_schema(), &cfg);
    fclose(f);
    f = open_memstream(&help, &hlen);
    tw_cfg_help(f, tw_pretrain_schema());
    fclose(f);

    for (const char *line = buf; *line; line = strchr(line, '\n') + 1) {
        CHECK(line[0] == '#', "printed line without '#': %.60s", line);
        CHECK(strchr(line, '\n'), "unterminated line");
        if (!strchr(line, '\n')) break;
    }
    FILE *d = fopen(docs_path, "rb");
    CHECK(d, "cannot open %s", docs_path);
    char *docs = NULL;
    if (d) {
        docs = calloc(1, 1 << 20);
        size_t n = fread(docs, 1, (1 << 20) - 1, d);
        docs[n] = '\0';
        fclose(d);
    }
    const tw_cfg_schema *s = tw_pretrain_schema();
    for (int i = 0; i < s->n_keys; i++) {
        char tok[300];
        snprintf(tok, sizeof tok, " %s=", s->keys[i].path);
        CHECK(count_occurrences(buf, tok) == 1, "print: '%s' appears %d times", tok, count_occurrences(buf, tok));
        snprintf(tok, sizeof tok, "  %s ", s->keys[i].path);
        CHECK(strstr(help, tok), "help lacks %s", s->keys[i].path);
        snprintf(tok, sizeof tok, "`%s`", s->keys[i].path);
        CHECK(!docs || strstr(docs, tok), "%s does not document %s", docs_path, tok);
        CHECK(s->keys[i].help && *s->keys[i].help, "%s has no help", s->keys[i].path);
    }
    CHECK(strstr(buf, " optim.lr=0.001 ") || strstr(buf, " optim.lr=0.001\n"), "print:\n%s", buf);
    printf("%s", buf);
    free(docs);
    free(buf);
    free(help);
}

/* The fine-tuning schema: the shared sections with its own defaults, its keys documented, a
 * round trip through YAML, and its rules across keys each naming the key to blame. */
static void test_finetune(const char *docs_path) {
    tw_finetune_cfg a, b;
    tw_err err = {0};
    char *ov[] = {"data.shards=d"};
    tw_status st = tw_cfg_load(tw_finetune_schema(), &a, NULL, 1, ov, &err);
    CHECK(st == TW_OK, "%s", err.msg);
    CHECK(a.optim.warmup_epochs == 0 && a.optim.epochs == 20 && a.data.batch == 64 && a.augment.view1.crop == 0 &&
              a.augment.view1.flip == 0.5 && a.augment.view2.crop == 1.0 && !strcmp(a.run.name, "finetune"),
          "finetune defaults");
    char *text = tw_cfg_to_yaml(tw_finetune_schema(), &a);
    st = tw_cfg_load_text(tw_finetune_schema(), &b, text, "round-trip", 0, NULL, &err);
    CHECK(st == TW_OK && !memcmp(&a, &b, sizeof a), "finetune round trip: %s", err.msg);
    free(text);
    FILE *d = fopen(docs_path, "rb");
    char *docs = calloc(1, 1 << 20);
    if (d && docs) {
        size_t n = fread(docs, 1, (1 << 20) - 1, d);
        docs[n] = 0;
    }
    if (d) fclose(d);
    const tw_cfg_schema *s = tw_finetune_schema();
    for (int i = 0; i < s->n_keys; i++) {
        char tok[300];
        snprintf(tok, sizeof tok, "`%s`", s->keys[i].path);
        CHECK(docs && strstr(docs, tok), "%s does not document %s", docs_path, tok);
    }
    free(docs);
    const struct { const char *over[3]; const char *key, *why; } rules[] = {
        {{"data.source=s1+s2", NULL}, "model.fusion", "needs a fusion"},
        {{"model.fusion=early", NULL}, "model.fusion", "fusion needs data.source=s1+s2"},
        {{"data.source=s1+s2", "model.fusion=early", "model.head=gated"}, "model.head", "feature-fusion head"},
        {{"model.init=ssl", NULL}, "model.init", "scratch, weights:FILE or ssl:CHECKPOINT"},
        {{"model.init_s2=imagenet", NULL}, "model.init_s2", "got 'imagenet'"},
        {{"data.label_fraction=0", NULL}, "data.label_fraction", "(0, 1]"},
        {{"data.classes=20", NULL}, "data.classes", "19 (BigEarthNet-19) or 43"},
    };
    for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
        char *o[4] = {"data.shards=d"};
        int n = 1;
        for (int j = 0; j < 3 && rules[r].over[j]; j++) o[n++] = (char *)rules[r].over[j];
        err.msg[0] = 0;
        st = tw_cfg_load(tw_finetune_schema(), &a, NULL, n, o, &err);
        CHECK(st != TW_OK && strstr(err.msg, rules[r].key) && strstr(err.msg, rules[r].why), "rule %zu: '%s'", r,
              err.msg);
        if (st != TW_OK) printf("ok   finetune rule: %s\n", err.msg);
    }
    /* Cross-modal pre-training: s1+s2 needs loss.pairing=cross and cross needs s1+s2. */
    tw_pretrain_cfg p;
    char *po[] = {"data.shards=d", "data.source=s1+s2", "loss.pairing=views"};
    st = tw_cfg_load(tw_pretrain_schema(), &p, NULL, 2, po, &err);
    CHECK(st != TW_OK && strstr(err.msg, "loss.pairing") && strstr(err.msg, "s1+s2"),
          "pretrain refuses s1+s2 with views (the default): %s", err.msg);
    st = tw_cfg_load(tw_pretrain_schema(), &p, NULL, 3, po, &err);
    CHECK(st != TW_OK && strstr(err.msg, "loss.pairing"), "pretrain refuses s1+s2 with views: %s", err.msg);
    char *pc[] = {"data.shards=d", "data.source=s2", "loss.pairing=cross"};
    st = tw_cfg_load(tw_pretrain_schema(), &p, NULL, 3, pc, &err);
    CHECK(st != TW_OK && strstr(err.msg, "loss.pairing") && strstr(err.msg, "data.source s1+s2"),
          "pretrain refuses cross without s1+s2: %s", err.msg);
    pc[1] = "data.source=s1+s2";
    st = tw_cfg_load(tw_pretrain_schema(), &p, NULL, 3, pc, &err);
    CHECK(st == TW_OK && p.loss.pairing == TW_PAIRING_CROSS && p.data.source == TW_SOURCE_S1S2,
          "pretrain takes s1+s2 with cross: %s", err.msg);
    char *pd[] = {"data.shards=d"};
    st = tw_cfg_load(tw_pretrain_schema(), &p, NULL, 1, pd, &err);
    CHECK(st == TW_OK && p.loss.pairing == TW_PAIRING_VIEWS, "loss.pairing defaults to views: %s", err.msg);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DOCS_CONFIG_MD\n", argv[0]);
        return 1;
    }
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    run_bad_cases();
    test_defaults_and_overrides();
    test_full_file_and_round_trip();
    test_print_help_docs(argv[1]);
    test_finetune(argv[1]);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", g_dir);
    printf(check_n_fail ? "FAIL test_config\n" : "PASS test_config\n");
    return check_exit_code();
}
