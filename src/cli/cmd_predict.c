/* `twinfuse predict CHECKPOINT --s2 SCENE [--s1 SCENE] --out MAP.tif [options] [key=value ...]`: a
 * fine-tuned classifier over whole scenes, written as georeferenced probability maps
 * (predict/predict.h, docs/predict.md). --manifest FILE runs many scenes with one model load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_run.h"
#include "cli/commands.h"
#include "config/finetune.h"
#include "predict/predict.h"
#include "train/checkpoint.h"

static const char usage[] =
    "usage: twinfuse predict CHECKPOINT --s2 SCENE [--s1 SCENE] --out MAP.tif [options] [key=value ...]\n"
    "       twinfuse predict CHECKPOINT --manifest FILE [options] [key=value ...]\n"
    "  --s2 SCENE         one multi-band GeoTIFF/VRT (bands named B01..B12, B8A, or the 12 in the shards'\n"
    "                     order) or 12 comma-separated band files in the shards' order\n"
    "  --s1 SCENE         VV and VH in dB: a 2-band file or VV.tif,VH.tif; warped onto the output grid\n"
    "  --s1-linear        S1 holds linear intensity: converted to 10 log10(x) dB\n"
    "  --grid RASTER      the output grid (CRS, transform, size); default: the S2 scene's\n"
    "  --out MAP.tif      one float band per class: probabilities blended over the windows (NaN: nodata)\n"
    "  --stride N         pixels between windows (default: half the model's window)\n"
    "  --batch N          windows per forward and rank (default: eval.batch or data.batch over the ranks)\n"
    "  --top-label FILE   uint8 map of the most probable class, with a colour table (255: nodata)\n"
    "  --multi-hot FILE   uint8 band per class: probability >= --threshold (default 0.5; 255: nodata)\n"
    "  --manifest FILE    one scene per line: s2=... [s1=...] out=... [top_label=...] [multi_hot=...]\n"
    "                     [grid=...]; # starts a comment\n"
    "  key=value          overrides of the checkpoint's configuration (e.g. data.shards=DIR, backend.*)\n";

typedef struct predict_args {
    const char *ckpt, *manifest;
    tw_predict_scene_opts o;
    int batch;
    char **ov;
    int n_ov;
} predict_args;

static int parse_int(const char *s, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || end == s || v < 1 || v > 1 << 20) return 1;
    *out = (int)v;
    return 0;
}

static int parse(predict_args *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->o.threshold = 0.5;
    a->ov = calloc((size_t)argc + 1, sizeof *a->ov);
    if (!a->ov || argc < 1 || argv[0][0] == '-') return 1;
    a->ckpt = a->o.ckpt = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int used = 1;
        if (!strcmp(s, "--s2") && v) a->o.s2 = v;
        else if (!strcmp(s, "--s1") && v) a->o.s1 = v;
        else if (!strcmp(s, "--grid") && v) a->o.grid = v;
        else if (!strcmp(s, "--out") && v) a->o.out = v;
        else if (!strcmp(s, "--top-label") && v) a->o.top_label = v;
        else if (!strcmp(s, "--multi-hot") && v) a->o.multi_hot = v;
        else if (!strcmp(s, "--manifest") && v) a->manifest = v;
        else if (!strcmp(s, "--stride") && v) {
            if (parse_int(v, &a->o.stride)) return fprintf(stderr, "twinfuse predict: --stride %s: want a positive integer\n", v), 1;
        } else if (!strcmp(s, "--batch") && v) {
            if (parse_int(v, &a->batch)) return fprintf(stderr, "twinfuse predict: --batch %s: want a positive integer\n", v), 1;
        } else if (!strcmp(s, "--threshold") && v) {
            char *end;
            a->o.threshold = strtod(v, &end);
            if (*end || end == v || !(a->o.threshold >= 0 && a->o.threshold <= 1))
                return fprintf(stderr, "twinfuse predict: --threshold %s: want a number in [0, 1]\n", v), 1;
        } else {
            used = 0;
            if (!strcmp(s, "--s1-linear")) a->o.s1_linear = 1;
            else if (strchr(s, '=') && s[0] != '-') a->ov[a->n_ov++] = argv[i];
            else return fprintf(stderr, "twinfuse predict: unknown or incomplete argument '%s'\n", s), 1;
        }
        i += used;
    }
    if (!a->manifest && (!a->o.out || (!a->o.s2 && !a->o.s1)))
        return fputs("twinfuse predict: give --s2 and/or --s1 and --out, or --manifest\n", stderr), 1;
    if (a->manifest && (a->o.out || a->o.s2 || a->o.s1 || a->o.grid || a->o.top_label || a->o.multi_hot))
        return fputs("twinfuse predict: --manifest names the scenes and outputs; drop --s2/--s1/--grid/--out/...\n",
                     stderr), 1;
    return 0;
}

/* One manifest line into o (pointers into line); 0 when well formed. */
static int manifest_line(tw_predict_scene_opts *o, char *line, char *why, size_t n_why) {
    o->s2 = o->s1 = o->grid = o->out = o->top_label = o->multi_hot = NULL;
    for (char *tok = strtok(line, " \t\r\n"); tok; tok = strtok(NULL, " \t\r\n")) {
        char *eq = strchr(tok, '=');
        if (!eq) return snprintf(why, n_why, "'%s' is not key=value", tok), 1;
        *eq = 0;
        const char *v = eq + 1;
        if (!strcmp(tok, "s2")) o->s2 = v;
        else if (!strcmp(tok, "s1")) o->s1 = v;
        else if (!strcmp(tok, "grid")) o->grid = v;
        else if (!strcmp(tok, "out")) o->out = v;
        else if (!strcmp(tok, "top_label")) o->top_label = v;
        else if (!strcmp(tok, "multi_hot")) o->multi_hot = v;
        else return snprintf(why, n_why, "unknown key '%s' (s2, s1, grid, out, top_label, multi_hot)", tok), 1;
    }
    if (!o->out || (!o->s2 && !o->s1)) return snprintf(why, n_why, "want s2= and/or s1= and out="), 1;
    return 0;
}

/* Every scene of the manifest in turn, after every line was checked (a typo on the last line
 * fails before the first scene runs); the first failing scene stops the run, its message naming
 * the line. Every rank reads the manifest itself. */
static tw_status run_manifest(tw_predictor *p, tw_comm *comm, predict_args *a, tw_err *err) {
    tw_status st = TW_OK;
    int n = 0;
    for (int pass = 0; pass < 2 && st == TW_OK; pass++) {
        FILE *f = fopen(a->manifest, "r");
        if (!f) return tw_err_set(err, TW_E_MISSING, "%s: cannot open the manifest", a->manifest);
        char line[16384];
        int lineno = 0;
        while (st == TW_OK && fgets(line, sizeof line, f)) {
            lineno++;
            char *hash = strchr(line, '#');
            if (hash) *hash = 0;
            if (strspn(line, " \t\r\n") == strlen(line)) continue;
            char why[256];
            if (manifest_line(&a->o, line, why, sizeof why)) {
                st = tw_err_set(err, TW_E_FORMAT, "%s:%d: %s", a->manifest, lineno, why);
                break;
            }
            if (pass == 0) {
                n++;
                continue;
            }
            st = tw_predict_scene(p, comm, &a->o, err);
            if (st) tw_err_prefix(err, "%s:%d: ", a->manifest, lineno);
        }
        fclose(f);
        if (st == TW_OK && n == 0) st = tw_err_set(err, TW_E_FORMAT, "%s: no scenes", a->manifest);
    }
    return st;
}

int tw_cmd_predict(int argc, char **argv) {
    if (tw_cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    predict_args a;
    if (parse(&a, argc, argv)) {
        fputs(usage, stderr);
        free(a.ov);
        return 2;
    }
    tw_err err = {0};
    tw_ckpt_info info;
    tw_finetune_cfg *cfg = calloc(1, sizeof *cfg);
    tw_comm *comm = NULL;
    int code = 1;
    if (tw_ckpt_info_read(&info, a.ckpt, &err) != TW_OK) {
        if (tw_cli_is_rank0()) fprintf(stderr, "twinfuse predict: %s\n", err.msg);
    } else if (strcmp(info.task, "classification")) {
        if (tw_cli_is_rank0())
            fprintf(stderr, "twinfuse predict: %s is a %s checkpoint; predict needs a classification checkpoint "
                            "(twinfuse finetune); `twinfuse embed CHECKPOINT --s2 ...` maps a pre-trained backbone's "
                            "features\n", a.ckpt, info.task);
    } else if (cfg && !tw_cli_load_config("predict", tw_finetune_schema(), cfg, a.ckpt, info.config, a.n_ov, a.ov) &&
               (comm = tw_cli_comm("predict", &cfg->backend))) {
        tw_predictor p;
        tw_status st = tw_predictor_init(&p, comm, cfg, a.ckpt, 1, a.batch, &err);
        if (st == TW_OK) st = a.manifest ? run_manifest(&p, comm, &a, &err) : tw_predict_scene(&p, comm, &a.o, &err);
        if (st != TW_OK && tw_comm_rank(comm) == 0) fprintf(stderr, "twinfuse predict: %s\n", err.msg);
        code = st != TW_OK;
        tw_predictor_free(&p);
        tw_comm_free(comm);
    }
    tw_ckpt_info_free(&info);
    free(cfg);
    free(a.ov);
    return code;
}
