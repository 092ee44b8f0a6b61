"""The runner's RoI-OHEM and focal-RPN options (--ohem-roi, --ohem-roi-pool, --ohem-roi-top-k,
--rpn-loss) become config attributes and run names."""
from mrcnn_ohem.runner import train_eval
from mrcnn_ohem.runner.cli import build_parser

TINY = ["--image-size", "64", "--backbone", "tiny", "--anchor-base", "8", "--no-progress"]


def config_for(*options, mode="training"):
    parser = build_parser("coco", "test")
    return train_eval.make_config(parser.parse_args([*options, "--dataset", "x", *TINY]), 4, mode)


def test_roi_options_reach_the_config():
    config = config_for("train", "--ohem-roi", "--ohem-roi-pool", "96", "--ohem-roi-top-k", "24")
    assert config.NAME == "coco_roi" and config.OHEM_RPN is False
    assert (config.OHEM_ROI, config.OHEM_ROI_POOL, config.OHEM_ROI_TOP_K) == (True, 96, 24)


def test_paper_ranking_and_nms_reach_the_config():
    config = config_for("train", "--ohem-roi", "--ohem-roi-ranking", "class+box", "--ohem-roi-nms", "0.7")
    assert (config.OHEM_ROI, config.OHEM_ROI_RANKING, config.OHEM_ROI_NMS_THRESHOLD) == (True, "class+box", 0.7)
    assert config_for("train", "--ohem-roi").OHEM_ROI_RANKING == "class"


def test_roi_pool_defaults_to_at_most_the_proposals():
    config = config_for("train", "--ohem-roi", "--ohem")
    assert config.NAME == "coco_ohem_roi" and config.OHEM_RPN is True
    # tiny backbone: 300 proposals per image, so the 512 default is capped at 300.
    assert config.OHEM_ROI_POOL == config.POST_NMS_ROIS_TRAINING == 300 and config.OHEM_ROI_TOP_K is None


def test_focal_rpn_implies_the_rpn_patch():
    config = config_for("train", "--rpn-loss", "focal")
    assert config.NAME == "coco_focal" and config.OHEM_RPN is True and config.OHEM_RPN_LOSS == "focal"
    assert config.OHEM_ROI is False
    both = config_for("train", "--rpn-loss", "focal", "--ohem-roi")
    assert both.NAME == "coco_focal_roi" and both.OHEM_ROI is True


def test_defaults_leave_the_baseline_alone():
    config = config_for("train")
    assert config.NAME == "coco_baseline" and not hasattr(config, "OHEM_ROI")
    assert not train_eval.uses_patch(build_parser("coco", "t").parse_args(["train", "--dataset", "x"]))
