"""The registered models. Importing this module imports no torch and reads no weights.

Input specs, pooling, licences and pretraining data follow ``shared/docs/fm-specs.md``
(official code of each model). ``weights`` is where a checkpoint is expected below the
weights dir (``--ecgfm-weights-dir`` / ``ECGFM_WEIGHTS_DIR``), in the file name the authors publish.
"""

from __future__ import annotations

from ..data.preprocess import InputSpec
from ..data.records import STD_LEADS
from .spec import MODELS, ModelSpec, register

_M = "ecgfm_suite.models"
MIMIC_LEADS = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")
JEPA_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
CINC2021 = ("challenge2021", "ptbxl")  # PTB-XL is one of the Challenge 2021 sources

_SPECS = [
    ModelSpec(
        id="random_cnn", family="random_cnn", loader=f"{_M}.controls:load_random_cnn", embed_dim=256,
        input_spec=InputSpec(fs=100, leads=STD_LEADS, window=1000, bandpass=(0.5, 40.0), normalisation="zscore_lead"),
        control=True, licence_code="Apache-2.0", licence_weights="n/a (seeded random init)",
        pooling="global average over time", description="seeded randomly initialised 1-D CNN: the control every FM must beat",
    ),
    ModelSpec(
        id="handcrafted", family="handcrafted", loader=f"{_M}.controls:load_handcrafted", embed_dim=64,
        input_spec=InputSpec(fs=250, leads=STD_LEADS, window=2500, bandpass=(0.5, 40.0)),
        control=True, licence_code="Apache-2.0", licence_weights="n/a", pooling="feature vector",
        description="classic ECG features: HR/RR statistics, QRS/QT/PR proxies, per-lead amplitude and spectral power",
    ),
    *[
        ModelSpec(
            id=f"hubert_ecg_{size}", family="hubert_ecg", loader=f"{_M}.hubert_ecg:load", embed_dim=dim,
            input_spec=InputSpec(fs=100, leads=STD_LEADS, window=500, bandpass=(0.05, 47.0),
                                 normalisation="minmax_lead", resampler="fft", pipeline="hubert_ecg"),
            weights=f"hubert_ecg_{size}", config={"size": size}, released_params=params,
            licence_code="CC-BY-NC-4.0", licence_weights="CC-BY-NC-4.0",
            pretrained_on=("challenge2021", "ptbxl", "code15", "mimic_iv_ecg", "sph", "samitrop", "hefei"),
            pooling="mean of last_hidden_state over time",
        )
        for size, dim, params in (("small", 512, 30_209_664), ("base", 768, 92_798_848), ("large", 960, 187_644_736))
    ],
    ModelSpec(
        id="ecg_fm", family="ecg_fm", loader=f"{_M}.ecg_fm:load", embed_dim=768,
        input_spec=InputSpec(fs=500, leads=STD_LEADS, window=2500, window_mode="all",
                             normalisation="zscore_lead", resampler="linear", pipeline="ecg_fm"),
        weights="ecg_fm/mimic_iv_ecg_physionet_pretrained.pt", released_params=90_373_248,
        licence_code="MIT", licence_weights="MIT", pretrained_on=("mimic_iv_ecg", *CINC2021),
        pooling="mean over 156 tokens per 5-s segment, then mean over segments",
    ),
    *[
        ModelSpec(
            id=f"ecgfounder_{variant}", family="ecgfounder", loader=f"{_M}.ecgfounder:load", embed_dim=1024,
            input_spec=InputSpec(fs=500, leads=leads, window=5000, notch=50.0, bandpass=(0.67, 40.0),
                                 normalisation="zscore_global", pipeline="ecgfounder"),
            weights=f"ecgfounder/{fname}", released_params=params,
            config={"in_channels": len(leads), "base_filters": 64, "ratio": 1,
                    "filter_list": (64, 160, 160, 400, 400, 1024, 1024), "m_blocks_list": (2, 2, 2, 3, 3, 4, 4),
                    "kernel_size": 16, "stride": 2, "groups_width": 16, "use_bn": False, "use_do": False,
                    "n_classes": 150},
            licence_code="MIT", licence_weights="not stated", pretrained_on=("heedb",),
            pooling="global average over time of the last stage",
        )
        for variant, leads, fname, params in (
            ("12lead", STD_LEADS, "12_lead_ECGFounder.pth", 30_665_264),
            ("1lead", ("I",), "1_lead_ECGFounder.pth", 30_654_000),
        )
    ],
    ModelSpec(
        id="ecg_jepa", family="ecg_jepa", loader=f"{_M}.ecg_jepa:load", embed_dim=768,
        input_spec=InputSpec(fs=250, leads=JEPA_LEADS, window=2500, resampler="fft", pipeline="ecg_jepa"),
        weights="ecg_jepa/multiblock_epoch100.pth", released_params=85_067_520,
        licence_code="MIT", licence_weights="not stated", pretrained_on=("challenge2021", "code15"),
        pooling="mean over 400 tokens after the final LayerNorm",
    ),
    ModelSpec(
        id="st_mem", family="st_mem", loader=f"{_M}.st_mem:load", embed_dim=768,
        input_spec=InputSpec(fs=250, leads=STD_LEADS, window=2250, window_mode="crops", n_crops=3,
                             bandpass=(0.67, 40.0), normalisation="zscore_global", resampler="fft", pipeline="st_mem"),
        weights="st_mem/st_mem_vit_base_full.pth", released_params=85_150_614,
        licence_code="CC-BY-NC-4.0 (VUNO, all rights reserved)", licence_weights="CC-BY-NC-4.0 / restricted",
        pretrained_on=("challenge2021", "code15"), pooling="mean over lead×patch tokens, then LayerNorm; mean of 3 crops",
    ),
    ModelSpec(
        id="merl", family="merl", loader=f"{_M}.merl:load", embed_dim=512,
        input_spec=InputSpec(fs=500, leads=MIMIC_LEADS, window=5000, normalisation="minmax_global", pipeline="merl"),
        weights="merl/res18_best_encoder.pth", released_params=3_848_832,
        licence_code="MIT", licence_weights="not stated", pretrained_on=("mimic_iv_ecg",),
        pooling="global average of layer4",
    ),
    ModelSpec(
        id="ecg_cpc", family="ecg_cpc", loader=f"{_M}.ecg_cpc:load", embed_dim=512,
        input_spec=InputSpec(fs=240, leads=STD_LEADS, window=600, window_mode="all", pipeline="ecg_cpc"),
        weights="ecg_cpc/last_11597276.ckpt", released_params=2_932_736,
        licence_code="none stated", licence_weights="not stated", pretrained_on=("heedb",),
        pooling="mean over S4 predictor tokens per 2.5-s crop, then mean over crops",
    ),
    ModelSpec(
        id="ecgfm_ked", family="ecgfm_ked", loader=f"{_M}.ecgfm_ked:load", embed_dim=768,
        input_spec=InputSpec(fs=100, leads=MIMIC_LEADS, window=1000, resampler="fft", pipeline="ecgfm_ked"),
        weights="ecgfm_ked/best_valid_all_increase_with_augment_epoch_3.pt", released_params=7_865_984,
        licence_code="none stated", licence_weights="not stated", pretrained_on=("mimic_iv_ecg",),
        pooling="mean over time of the xresnet1d101 trunk",
    ),
    ModelSpec(
        id="openecg_codec_v6", family="openecg_codec", loader=f"{_M}.openecg_codec:load", embed_dim=128,
        input_spec=InputSpec(fs=500, leads=("II",), window=5000, pipeline="openecg_rank"),
        weights="openecg_codec_v6/codec_v6.pt", bundled="openecg:models/codec_v6.pt", released_params=1_159_572,
        licence_code="Apache-2.0", licence_weights="Apache-2.0 (shipped in the openecg wheel)",
        pretrained_on=("ludb", "qtdb", "mitdb", "incart", "ptbxl"),
        pooling="mean of upper-transformer tokens (derived; no official embedding API)",
    ),
]

for _spec in _SPECS:
    register(_spec)

__all__ = ["MODELS", "MIMIC_LEADS", "JEPA_LEADS"]
