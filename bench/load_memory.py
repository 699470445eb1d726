"""Peak memory of loading a checkpoint: does load_model hold one copy of the weights, or two?

    python bench/load_memory.py                      # gpt2-medium shape, random weights (~1.4 GB file in a temp dir)
    python bench/load_memory.py --shape gpt2 --keep /tmp/ckpt

Each measurement runs in a fresh subprocess and reads its peak resident memory (ru_maxrss) before and after the
load; the difference is what loading cost. It is compared with the size of model.safetensors, and with the
naive way (random-initialised model + safetensors.torch.load_file + load_state_dict), which holds two copies.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Both steps run in their own processes: on Linux a child inherits its parent's peak RSS through fork, so the
# parent here stays small (it never imports torch).
MAKE = """
import sys, torch
from minisft.model import GPT, official_config
from minisft.pretrained import save_model
torch.manual_seed(0)
save_model(GPT(official_config(sys.argv[1])), sys.argv[2])
"""

MEASURE = """
import resource, sys, json, torch
from minisft import pretrained
def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
folder, how = sys.argv[1], sys.argv[2]
before = peak_mib()
if how == "load_model":
    model = pretrained.load_model(folder)
else:  # naive: a randomly initialised model, then the whole file as a dict, then a copy into the model
    from safetensors.torch import load_file
    model = pretrained.GPT(pretrained.read_config(folder))
    state = load_file(folder + "/model.safetensors")
    for k in [k for k in state if k.endswith(pretrained.CONV1D_WEIGHTS)]:
        state[k] = state[k].t()
    model.load_state_dict(state, strict=False)  # copies into the random weights: two copies at once
print(json.dumps({"before": before, "after": peak_mib()}))
"""


def measure(folder: Path, how: str) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(folder), how], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="gpt2-medium", help="an official GPT-2 shape: gpt2 ... gpt2-xl")
    parser.add_argument("--keep", default=None, help="write the checkpoint here (default: a temp dir, deleted)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive-load comparison")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        subprocess.run([sys.executable, "-c", MAKE, args.shape, str(folder)], cwd=ROOT, check=True)
        size = (folder / "model.safetensors").stat().st_size / 2**20
        print(f"{args.shape}: model.safetensors = {size:,.0f} MiB")
        for how in ["load_model"] + ([] if args.no_naive else ["naive"]):
            r = measure(folder, how)
            cost = r["after"] - r["before"]
            print(f"  {how:>10}: peak RSS {r['after']:,.0f} MiB (imports {r['before']:,.0f} MiB), "
                  f"loading added {cost:,.0f} MiB = {cost / size:.2f} x the file")


if __name__ == "__main__":
    main()
