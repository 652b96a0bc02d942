/* BigEarthNet v1.0 label files (<patch>/<patch>_labels_metadata.json): the "labels" array of
 * 43-class CORINE names, as multi-hot 43- and 19-class vectors. JSON through jansson; the names
 * and the mapping are labels.h's. */
#ifndef TW_LABELS_V1_H
#define TW_LABELS_V1_H

#include <stdint.h>

#include "core/status.h"

/* Sets l43[c] and l19[map(c)] for each label of the file at path (the caller zeroes them first).
 * A file that is not JSON, has no "labels" array or names an unknown class is a status naming
 * the file (and the label). */
tw_status tw_labels_v1_read(uint8_t *l19, uint8_t *l43, const char *path, tw_err *err);

#endif
