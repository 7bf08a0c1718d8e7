"""`python -m gxnpuc.report docs/ir.md`: regenerate the op table of docs/ir.md."""
import sys

from gxnpuc.report.summary import update_ir_doc

update_ir_doc(sys.argv[1] if len(sys.argv) > 1 else "docs/ir.md")
