"""Evaluation is not built yet (issue: eval.py, the paper's robustness evaluation)."""
from afd_lightning.evaluate import main

if __name__ == "__main__":
    main()
