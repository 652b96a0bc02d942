/* The v1.0 label file reader (labels_v1.h). */
#include "data/labels_v1.h"

#include <jansson.h>

#include "data/labels.h"

tw_status tw_labels_v1_read(uint8_t *l19, uint8_t *l43, const char *path, tw_err *err) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je), *labels = j ? json_object_get(j, "labels") : NULL, *lab;
    tw_status st = TW_OK;
    if (!json_is_array(labels)) {
        st = tw_err_set(err, TW_E_FORMAT, "%s: %s", path, j ? "no \"labels\" array" : je.text);
        goto done;
    }
    size_t k;
    json_array_foreach(labels, k, lab) {
        int c = json_is_string(lab) ? tw_labels_find43(json_string_value(lab)) : -1;
        if (c < 0) {
            st = tw_err_set(err, TW_E_UNKNOWN, "%s: unknown label '%s'", path,
                            json_is_string(lab) ? json_string_value(lab) : "(not a string)");
            goto done;
        }
        l43[c] = 1;
        if (tw_labels_map43_to19(c) >= 0) l19[tw_labels_map43_to19(c)] = 1;
    }
done:
    json_decref(j);
    return st;
}
