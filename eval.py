"""Evaluate checkpoints: `python eval.py ckpt_path=<run>/checkpoints/last.ckpt [suite=...] [attack=...]` (every option: conf/eval/eval.yaml)."""

from afd_lightning.evaluate import main

if __name__ == "__main__":
    main()
