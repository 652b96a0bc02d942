/* The two BigEarthNet nomenclatures and the official 43 -> 19 mapping (labels.h). */
#include "data/labels.h"

#include <string.h>

const char *const tw_labels_names19[TW_N_CLASSES] = {
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
};

const char *const tw_labels_names43[TW_N_CLASSES43] = {
    "Continuous urban fabric",
    "Discontinuous urban fabric",
    "Industrial or commercial units",
    "Road and rail networks and associated land",
    "Port areas",
    "Airports",
    "Mineral extraction sites",
    "Dump sites",
    "Construction sites",
    "Green urban areas",
    "Sport and leisure facilities",
    "Non-irrigated arable land",
    "Permanently irrigated land",
    "Rice fields",
    "Vineyards",
    "Fruit trees and berry plantations",
    "Olive groves",
    "Pastures",
    "Annual crops associated with permanent crops",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland",
    "Moors and heathland",
    "Sclerophyllous vegetation",
    "Transitional woodland/shrub",
    "Beaches, dunes, sands",
    "Bare rock",
    "Sparsely vegetated areas",
    "Burnt areas",
    "Inland marshes",
    "Peatbogs",
    "Salt marshes",
    "Salines",
    "Intertidal flats",
    "Water courses",
    "Water bodies",
    "Coastal lagoons",
    "Estuaries",
    "Sea and ocean",
};

/* label_conversion of BigEarthNet's label_indices.json, inverted: 43-class index -> 19-class. */
static const int8_t map43_to19[TW_N_CLASSES43] = {
    0, 0, 1, -1, -1, -1, -1, -1, -1, -1, -1,   /* urban, industrial; 3..10 dropped */
    2, 2, 2, 3, 3, 3, 4, 3, 5, 6, 7,            /* 11..21 agriculture */
    8, 9, 10, 11, 12, 12, 13, 14, -1, 11, -1,   /* 22..32 forest, semi-natural */
    15, 15, 16, 16, -1, 17, 17, 18, 18, 18,     /* 33..42 wetlands, waters */
};

static int find(const char *const *names, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return i;
    return -1;
}

int tw_labels_find19(const char *name) { return find(tw_labels_names19, TW_N_CLASSES, name); }
int tw_labels_find43(const char *name) { return find(tw_labels_names43, TW_N_CLASSES43, name); }

int tw_labels_map43_to19(int idx43) {
    if (idx43 < 0 || idx43 >= TW_N_CLASSES43) return -1;
    return map43_to19[idx43];
}
