"""Train a model: `python train.py [dataset=...] [method=...] [key=value ...]` (every option: conf/train/train.yaml)."""

from afd_lightning.train import main

if __name__ == "__main__":
    main()
