"""`python -m gxnpuc.config docs/config.md`: regenerate the key tables of docs/config.md."""
import sys

from gxnpuc.config.docs import update_docs

update_docs(sys.argv[1] if len(sys.argv) > 1 else "docs/config.md")
