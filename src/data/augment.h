/* Earth-observation augmentations for Barlow Twins views: random resized crop, flips, rot90,
 * per-band brightness/contrast jitter, Gaussian blur (optical), additive noise and Gamma speckle
 * (SAR, in dB), band dropout. Every draw comes from Philox streams keyed by (seed, epoch, sample,
 * view), so a sample's views do not depend on the rank count, the batch it lands in or a resume;
 * tw_augment_pair gives an S1+S2 pair one geometric transform.
 * Inputs are normalised f32 bands (the loader's job); defaults and reasons: docs/augmentations.md. */
#ifndef TW_AUGMENT_H
#define TW_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

/* Probability that each transform is applied to one view. */
typedef struct tw_aug_view_probs {
    float crop, flip, rot90, jitter, blur, noise, speckle, band_dropout;
} tw_aug_view_probs;

typedef struct tw_aug_params {
    tw_aug_view_probs view[2];
    float crop_min_scale;        /* area fraction, as RandomResizedCrop's scale[0]; ratio 3/4..4/3 */
    float jitter_brightness;     /* additive shift uniform in [-b, b] (normalised units), per band */
    float jitter_contrast;       /* factor uniform in [1 - c, 1 + c] around the band's mean */
    float blur_sigma_min, blur_sigma_max;   /* pixels */
    float noise_std;             /* additive Gaussian, normalised units */
    int speckle_looks;           /* L of the Gamma(L, 1/L) intensity speckle */
    float band_dropout_frac;     /* fraction of the bands set to 0 (their mean), at least one */
    const float *db_per_unit;    /* [c]: dB per normalised unit (the band's std) for speckle;
                                  * NULL: the data is in dB already */
} tw_aug_params;

/* Scratch floats tw_augment_view needs for an s x s output. */
size_t tw_augment_scratch_floats(int s);

/* out [c, s, s] = view `view` (0 to 3) of in [c, h, w] (s <= h, s <= w): the probabilities of
 * p->view[view % 2], the Philox streams of view itself (views 2 and 3: a cross-modal pair's second
 * S1 and S2 views, train/pretrain.c). Without a crop the view starts from the centre s x s window.
 * scratch: tw_augment_scratch_floats(s) floats. */
void tw_augment_view(float *out, float *scratch, const float *in, int c, int h, int w, int s,
                     const tw_aug_params *p, uint64_t seed, uint32_t epoch, uint32_t sample,
                     uint32_t view);

/* One view of an S1+S2 pair (fine-tuning): the geometric transform (crop, flips, quarter turns)
 * is drawn once, from p_s2's crop_min_scale and view[view].crop/flip/rot90 (p_s1's when there is
 * no S2), and applied identically to both sources, whatever their channel counts; then each
 * source's photometric transforms with its own parameters and its own Philox streams.
 * out_s2 is exactly tw_augment_view(out_s2, ..., in_s2, c_s2, ..., p_s2, ...); out_s1 has the same
 * geometry, with radiometric draws independent of S2's. Either source may be NULL (with its
 * out); with S1 alone this is tw_augment_view of S1. in_*: [c_*, h, w]; out_*: [c_*, s, s];
 * scratch: tw_augment_scratch_floats(s) floats. */
void tw_augment_pair(float *out_s1, float *out_s2, float *scratch, const float *in_s1, int c_s1, const float *in_s2,
                     int c_s2, int h, int w, int s, const tw_aug_params *p_s1, const tw_aug_params *p_s2,
                     uint64_t seed, uint32_t epoch, uint32_t sample, uint32_t view);

#endif
