"""Placeholder until the evaluation suite lands; the trained model is already usable via load_classifier."""
import sys


def main() -> None:
    sys.exit(
        "afd-eval: the attack-suite evaluation is not built yet. Meanwhile every run writes test/acc_clean "
        "and test/acc_adv to metrics.json, and afd_lightning.load_classifier(<ckpt>) returns the trained "
        "classifier for your own tools."
    )
