"""``python -m fastconv SCRIPT``: run a book script unchanged on fastconv (zero-change mode)."""
import sys

from fastconv.zerochange import main

if __name__ == "__main__":
    sys.exit(main())
