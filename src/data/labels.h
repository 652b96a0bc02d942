/* The BigEarthNet nomenclatures: the 43 CORINE Land Cover names of v1.0 and the 19-class
 * nomenclature of Sumbul et al. 2020 (BigEarthNet-19, also reBEN's), with the official mapping
 * (label_indices.json, "label_conversion"). Lookups by exact name; nothing else lives here. */
#ifndef TW_LABELS_H
#define TW_LABELS_H

#include <stdint.h>

#define TW_N_CLASSES 19
#define TW_N_CLASSES43 43

extern const char *const tw_labels_names19[TW_N_CLASSES];
extern const char *const tw_labels_names43[TW_N_CLASSES43];

/* Index of a name in the 19- or 43-class list, or -1 when the name is not in it. */
int tw_labels_find19(const char *name);
int tw_labels_find43(const char *name);
/* The 19-class index a 43-class index maps to, or -1 for the 11 classes BigEarthNet-19 drops. */
int tw_labels_map43_to19(int idx43);

#endif
