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
        config={"seed": 0, "channels": (32, 64, 128, 256, 256), "kernel_size": 7},
        control=True, licence_code="Apache-2.0", licence_weights="n/a (seeded random init)",
        pooling="global average over time",
        description="seeded randomly initialised 1-D CNN: the control every FM must beat",
    ),
    ModelSpec(
        id="handcrafted", family="handcrafted", loader=f"{_M}.controls:load_handcrafted", embed_dim=101,
        input_spec=InputSpec(fs=250, leads=STD_LEADS, window=2500, bandpass=(0.5, 40.0)),
        control=True, licence_code="Apache-2.0", licence_weights="n/a", pooling="feature vector",
        description="classic ECG features: HR/RR statistics, QRS/QT/PR proxies, per-lead amplitude and spectral power",
    ),
    *[
        ModelSpec(
            id=f"hubert_ecg_{size}", family="hubert_ecg", loader=f"{_M}.hubert_ecg:load", embed_dim=dim,
            input_spec=InputSpec(fs=100, leads=STD_LEADS, window=500, bandpass=(0.05, 47.0),
                                 normalisation="minmax_lead", resampler="fft", pipeline="hubert_ecg"),
            weights=f"hubert_ecg_{size}", released_params=params,
            # HuBERTECGConfig size arguments of the released config.json (shared ones: hubert_ecg.RELEASED_COMMON)
            config={"hidden_size": dim, "num_hidden_layers": layers, "num_attention_heads": heads,
                    "intermediate_size": 4 * dim},
            licence_code="CC-BY-NC-4.0", licence_weights="CC-BY-NC-4.0",
            pretrained_on=("challenge2021", "ptbxl", "code15", "mimic_iv_ecg", "sph", "samitrop", "hefei"),
            pooling="mean of last_hidden_state over time",
        )
        for size, dim, layers, heads, params in (
            ("small", 512, 8, 8, 30_209_664), ("base", 768, 12, 12, 92_798_848), ("large", 960, 16, 12, 187_644_736)
        )
    ],
    ModelSpec(
        id="ecg_fm", family="ecg_fm", loader=f"{_M}.ecg_fm:load", embed_dim=768,
        input_spec=InputSpec(fs=500, leads=STD_LEADS, window=2500, window_mode="all",
                             normalisation="zscore_lead", resampler="linear", pipeline="ecg_fm"),
        weights="ecg_fm/mimic_iv_ecg_physionet_pretrained.pt", released_params=90_373_248,
        # wav2vec2_cmsc architecture arguments of w2v_cmsc_rlm.yaml (the file's own cfg wins when present)
        config={"encoder_layers": 12, "encoder_embed_dim": 768, "encoder_ffn_embed_dim": 3072,
                "encoder_attention_heads": 12, "conv_feature_layers": "[(256, 2, 2)] * 4", "in_d": 12,
                "conv_bias": False, "extractor_mode": "default", "layer_norm_first": False, "conv_pos": 128,
                "conv_pos_groups": 16},
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
        config={"encoder_embed_dim": 768, "encoder_depth": 12, "encoder_num_heads": 16, "mlp_ratio": 4.0,
                "qkv_bias": False, "c": 8, "p": 50, "t": 50, "pos_type": "sincos", "leads": tuple(range(8))},
        licence_code="MIT", licence_weights="not stated", pretrained_on=("challenge2021", "code15"),
        pooling="mean over 400 tokens after the final LayerNorm",
    ),
    ModelSpec(
        id="st_mem", family="st_mem", loader=f"{_M}.st_mem:load", embed_dim=768,
        input_spec=InputSpec(fs=250, leads=STD_LEADS, window=2250, window_mode="crops", n_crops=3,
                             bandpass=(0.67, 40.0), normalisation="zscore_global", resampler="fft", pipeline="st_mem"),
        weights="st_mem/st_mem_vit_base_full.pth", released_params=85_150_614,
        # ``ST_MEM`` (st_mem_vit_base_dec256d4b) arguments that shape the encoder; its ST_MEM_ViT keeps dim_head=64
        config={"seq_len": 2250, "patch_size": 75, "num_leads": 12, "embed_dim": 768, "depth": 12, "num_heads": 12,
                "mlp_ratio": 4, "qkv_bias": True, "encoder_dim_head": 64},
        licence_code="CC-BY-NC-4.0 (VUNO, all rights reserved)", licence_weights="CC-BY-NC-4.0 / restricted",
        pretrained_on=("challenge2021", "code15"),
        pooling="mean over lead×patch tokens, then LayerNorm; mean of 3 crops",
    ),
    ModelSpec(
        id="merl", family="merl", loader=f"{_M}.merl:load", embed_dim=512,
        input_spec=InputSpec(fs=500, leads=MIMIC_LEADS, window=5000, normalisation="minmax_global", pipeline="merl"),
        weights="merl/res18_best_encoder.pth", released_params=3_848_832,
        # ResNet18() = ResNet(BasicBlock, [2, 2, 2, 2]); widths/in_channels are hard-coded officially
        config={"block": "BasicBlock", "num_blocks": (2, 2, 2, 2), "num_classes": 10,
                "widths": (64, 128, 256, 512), "in_channels": 12},
        licence_code="MIT", licence_weights="not stated", pretrained_on=("mimic_iv_ecg",),
        pooling="global average of layer4",
    ),
    ModelSpec(
        id="ecg_cpc", family="ecg_cpc", loader=f"{_M}.ecg_cpc:load", embed_dim=512,
        input_spec=InputSpec(fs=240, leads=STD_LEADS, window=600, window_mode="all", pipeline="ecg_cpc"),
        weights="ecg_cpc/last_11597276.ckpt", released_params=2_932_736,
        # hydra paths of code/conf/config_cpc_ecg_s4_heedb.yaml (a shipped config_<stem>_ckpt.yaml overrides them)
        config={"ts.enc.features": (512,) * 4, "ts.enc.kss": (3, 1, 1, 1), "ts.enc.strides": (2, 1, 1, 1),
                "ts.enc.dilations": (1,) * 4, "ts.enc.normalization": True, "ts.enc.layer_norm": False,
                "ts.pred.model_dim": 512, "ts.pred.state_dim": 8, "ts.pred.layers": 4, "ts.pred.causal": True,
                "ts.pred.prenorm": False, "ts.pred.batchnorm": False, "ts.pred.backbone": "s42",
                "base.fs": 240.0, "base.input_size": 10.0, "base.input_channels": 12},
        licence_code="none stated", licence_weights="not stated", pretrained_on=("heedb",),
        pooling="mean over S4 predictor tokens per 2.5-s crop, then mean over crops",
    ),
    ModelSpec(
        id="ecgfm_ked", family="ecgfm_ked", loader=f"{_M}.ecgfm_ked:load", embed_dim=768,
        input_spec=InputSpec(fs=100, leads=MIMIC_LEADS, window=1000, resampler="fft", pipeline="ecgfm_ked"),
        weights="ecgfm_ked/best_valid_all_increase_with_augment_epoch_3.pt", released_params=7_865_984,
        # xresnet1d101(num_classes=105, input_channels=12, kernel_size=5, ps_head=0.5) + XResNet1d defaults
        config={"num_classes": 105, "input_channels": 12, "kernel_size": 5, "ps_head": 0.5, "widen": 1.0,
                "stem_szs": (32, 32, 64), "kernel_size_stem": 5},
        licence_code="none stated", licence_weights="not stated", pretrained_on=("mimic_iv_ecg",),
        pooling="mean over time of the xresnet1d101 trunk",
    ),
    ModelSpec(
        id="openecg_codec_v6", family="openecg_codec", loader=f"{_M}.openecg_codec:load", embed_dim=128,
        # the codec has no lead embedding (lead-agnostic): records without lead II (CinC 2017) give lead I
        input_spec=InputSpec(fs=500, leads=("II",), window=5000, lead_fallbacks=(("II", "I"),),
                             pipeline="openecg_rank"),
        weights="openecg_codec_v6/codec_v6.pt", bundled="openecg:models/codec_v6.pt", released_params=1_159_572,
        # model_config of the shipped codec_v6.pt (the checkpoint's own config wins when loaded)
        config={"patch_size": 10, "d_model": 128, "n_heads": 4, "n_layers": 8, "mid_split": 4, "ff": 256,
                "lower_kernel": 7, "pos_type": "sinusoidal", "use_lead_emb": False, "conv_stem": False},
        licence_code="Apache-2.0", licence_weights="Apache-2.0 (shipped in the openecg wheel)",
        pretrained_on=("ludb", "qtdb", "mitdb", "incart", "ptbxl"),
        pooling="mean of upper-transformer tokens (derived; no official embedding API)",
    ),
]

for _spec in _SPECS:
    register(_spec)

__all__ = ["MODELS", "MIMIC_LEADS", "JEPA_LEADS"]
