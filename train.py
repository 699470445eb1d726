"""Fine-tune GPT-2 on instruction -> tweet pairs. The loop lives in minisft/training.py; run with --help."""

import sys

from minisft.training import main

if __name__ == "__main__":
    sys.exit(main())
