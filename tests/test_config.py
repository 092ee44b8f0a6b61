"""mrcnn_ohem.config: the OHEM mixin's defaults, validation and display."""
import pytest

from mrcnn_ohem import OHEMConfig, OHEMConfigMixin, ohem_settings
from mrcnn_ohem.maskrcnn.config import Config


class UserConfig(OHEMConfigMixin, Config):
    NAME = "user"
    NUM_CLASSES = 3


def test_defaults_resolve_top_k_from_rpn_budget():
    settings = ohem_settings(UserConfig())
    assert settings[:5] == (True, 256, True, None, None)
    assert settings[5:] == (None, None, 0)  # nms_threshold, max_negatives_per_positive, min_negatives


def test_bundled_ohem_config_is_a_config():
    class Mine(OHEMConfig):
        NAME = "mine"
        NUM_CLASSES = 2
        OHEM_RPN_TOP_K = 64
        OHEM_RPN_POSITIVE_FRACTION = 0.25

    config = Mine()
    assert isinstance(config, Config) and config.BATCH_SIZE == config.IMAGES_PER_GPU * config.GPU_COUNT
    assert ohem_settings(config).top_k == 64 and ohem_settings(config).positive_fraction == 0.25


def test_display_shows_ohem_settings(capsys):
    UserConfig().display()
    out = capsys.readouterr().out
    for name in ("OHEM_RPN ", "OHEM_RPN_TOP_K", "OHEM_RPN_PER_IMAGE", "OHEM_RPN_POSITIVE_FRACTION",
                 "OHEM_RPN_NEGATIVE_POOL"):
        assert name in out


@pytest.mark.parametrize(
    "attribute,value,message",
    [
        ("OHEM_RPN", 1, r"OHEM_RPN must be True or False; received 1"),
        ("OHEM_RPN_PER_IMAGE", "no", r"OHEM_RPN_PER_IMAGE must be True or False; received 'no'"),
        ("OHEM_RPN_TOP_K", 0,
         r"OHEM_RPN_TOP_K must be None or an integer >= 1 \(None: RPN_TRAIN_ANCHORS_PER_IMAGE\); received 0"),
        ("OHEM_RPN_TOP_K", 12.0, r"OHEM_RPN_TOP_K must be .* received 12.0"),
        ("OHEM_RPN_POSITIVE_FRACTION", 1.2,
         r"OHEM_RPN_POSITIVE_FRACTION must be None or a number in \[0, 1\]; received 1.2"),
        ("OHEM_RPN_POSITIVE_FRACTION", True,
         r"OHEM_RPN_POSITIVE_FRACTION must be None or a number in \[0, 1\]; received True"),
        ("OHEM_RPN_NEGATIVE_POOL", 0,
         r"OHEM_RPN_NEGATIVE_POOL must be None or an integer >= 1 \(None: keep every negative\); received 0"),
        ("OHEM_ROI_RANKING", "box", r"OHEM_ROI_RANKING must be one of .*class.*class\+box.*; received 'box'"),
        ("OHEM_ROI_NMS_THRESHOLD", 0, r"OHEM_ROI_NMS_THRESHOLD must be None or a number in \(0, 1\]"),
    ],
)
def test_invalid_settings_raise_in_init(attribute, value, message):
    bad = type("Bad", (UserConfig,), {attribute: value})
    with pytest.raises(ValueError, match=message):
        bad()


def test_plain_config_object_uses_defaults():
    class Plain:
        RPN_TRAIN_ANCHORS_PER_IMAGE = 128

    assert ohem_settings(Plain()).top_k == 128
    with pytest.raises(ValueError, match=r"RPN_TRAIN_ANCHORS_PER_IMAGE must be an integer >= 1 when "
                                         r"OHEM_RPN_TOP_K is None; received None"):
        ohem_settings(object())


# --- RoI-head OHEM and the focal RPN loss (issue 12) -------------------------------------------

def test_roi_and_rpn_loss_defaults():
    from mrcnn_ohem.config import ohem_roi_settings, rpn_loss_settings

    config = UserConfig()
    assert rpn_loss_settings(config) == ("ohem", 0.25, 2.0)
    roi = ohem_roi_settings(config)
    assert roi.enabled is False and roi.pool == 512 and roi.top_k == config.TRAIN_ROIS_PER_IMAGE == 200


def test_roi_top_k_and_pool_resolve():
    from mrcnn_ohem.config import ohem_roi_settings

    class Roi(UserConfig):
        OHEM_ROI = True
        TRAIN_ROIS_PER_IMAGE = 64
        OHEM_ROI_POOL = 256
        OHEM_ROI_TOP_K = 32

    assert ohem_roi_settings(Roi()) == (True, 256, 32, 64, 0.33, "class", None)
    assert not ohem_roi_settings(Roi()).selects_for_box_loss

    class Paper(Roi):
        OHEM_ROI_RANKING = "class+box"
        OHEM_ROI_NMS_THRESHOLD = 0.7

    assert ohem_roi_settings(Paper())[5:] == ("class+box", 0.7) and ohem_roi_settings(Paper()).selects_for_box_loss


def test_display_shows_effective_values(capsys):
    class Roi(UserConfig):
        OHEM_ROI = True
        TRAIN_ROIS_PER_IMAGE = 64
        OHEM_ROI_POOL = 128

    Roi().display()
    lines = {line.split(" ", 1)[0]: line.split(None, 1)[1] for line in capsys.readouterr().out.splitlines()
             if len(line.split()) > 1}
    assert lines["OHEM_ROI_TOP_K"] == "64 (None: TRAIN_ROIS_PER_IMAGE)"
    assert lines["OHEM_RPN_TOP_K"] == "256 (None: RPN_TRAIN_ANCHORS_PER_IMAGE)"
    assert lines["OHEM_ROI"] == "True" and lines["OHEM_ROI_POOL"] == "128"
    assert lines["OHEM_RPN_LOSS"] == "ohem" and lines["OHEM_RPN_FOCAL_GAMMA"] == "2.0"
    assert lines["TRAIN_ROIS_PER_IMAGE"] == "64"  # the rest of the listing is untouched


@pytest.mark.parametrize(
    "attributes,message",
    [
        ({"OHEM_RPN_LOSS": "retina"}, r"OHEM_RPN_LOSS must be one of \['ohem', 'focal'\]; received 'retina'"),
        ({"OHEM_RPN_FOCAL_ALPHA": 1.5}, r"OHEM_RPN_FOCAL_ALPHA must be a number in \[0, 1\]; received 1.5"),
        ({"OHEM_RPN_FOCAL_GAMMA": -2}, r"OHEM_RPN_FOCAL_GAMMA must be a number >= 0; received -2"),
        ({"OHEM_ROI": "yes"}, r"OHEM_ROI must be True or False; received 'yes'"),
        ({"OHEM_ROI_POOL": 0}, r"OHEM_ROI_POOL must be an integer >= 1; received 0"),
        ({"OHEM_ROI_TOP_K": 0},
         r"OHEM_ROI_TOP_K must be None or an integer >= 1 \(None: TRAIN_ROIS_PER_IMAGE\); received 0"),
        ({"OHEM_ROI": True, "OHEM_ROI_POOL": 100},
         r"OHEM_ROI_POOL must be an integer >= 200 \(TRAIN_ROIS_PER_IMAGE\) when OHEM_ROI is True; received 100"),
    ],
)
def test_invalid_roi_and_rpn_loss_settings_raise_in_init(attributes, message):
    bad = type("Bad", (UserConfig,), attributes)
    with pytest.raises(ValueError, match=message):
        bad()


def test_small_pool_is_fine_while_roi_ohem_is_off():
    class Off(UserConfig):
        OHEM_ROI_POOL = 100

    Off()


def test_display_says_what_the_positive_fraction_does(capsys):
    # The default (None) and a cap: floor(0.5 * 256) = 128 positives first, then negatives.
    class Capped(UserConfig):
        OHEM_RPN_POSITIVE_FRACTION = 0.5

    for config, expected in ((UserConfig(), "None (positives and negatives ranked together)"),
                             (Capped(), "0.5 (positives first, at most 128 of 256; then the hardest negatives)")):
        config.display()
        lines = {line.split(" ", 1)[0]: line.split(None, 1)[1] for line in capsys.readouterr().out.splitlines()
                 if len(line.split()) > 1}
        assert lines["OHEM_RPN_POSITIVE_FRACTION"] == expected
