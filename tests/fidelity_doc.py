"""Write docs/fidelity.md from tests/spec_values/ (run from the repository root: python tests/fidelity_doc.py)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))

import spec_values  # noqa: E402

if __name__ == "__main__":
    target = pathlib.Path(__file__).parents[1] / "docs" / "fidelity.md"
    target.write_text(spec_values.markdown())
    print(f"wrote {target} ({len(spec_values.rows())} rows)")
