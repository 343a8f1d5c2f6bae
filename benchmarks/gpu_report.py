r"""The table of a benchmarks/gpu_check.sh run: every figure it wrote under OUT next to its anchor.

  python benchmarks/gpu_report.py OUT_DIR      # writes OUT_DIR/summary.md and prints it

Reads OUT_DIR/e2e_*.json (benchmarks/end_to_end.py), OUT_DIR/throughput_*.json
(benchmarks/train_throughput.py, the fallback when no dataset could be prepared) and
OUT_DIR/host_loop.json (benchmarks/host_loop.py); any of them may be missing or partial (a stage
that failed or ran out of time). Needs only the standard library.

Anchors (H200, 256x256, training img/s, measured before this repository's runs):
  PyTorch, bf16 + channels_last: ImprovedCNN 8,114, ComplexCNN 4,709, ResNet34 5,051 at batch 64,
  ResNet34 7,066 at batch 256; PyTorch fp32 at batch 64: ImprovedCNN 5,502, ComplexCNN 2,635,
  ResNet34 2,465; a plain JAX (flax) ResNet34 bf16 train step: 6,246 at batch 64, 9,863 at 256.
"""
import json
import pathlib
import sys

# (model, dtype, batch) -> (PyTorch img/s, plain JAX img/s)
ANCHORS = {
    ("improvedcnn", "bfloat16", 64): (8114, None),
    ("complexcnn", "bfloat16", 64): (4709, None),
    ("resnet34", "bfloat16", 64): (5051, 6246),
    ("resnet34", "bfloat16", 256): (7066, 9863),
    ("improvedcnn", "float32", 64): (5502, None),
    ("complexcnn", "float32", 64): (2635, None),
    ("resnet34", "float32", 64): (2465, None),
}
PATHS = ("model_only", "on_device", "streamed")


def _load(path: pathlib.Path):
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as error:
    return {"error": f"{path.name}: {error}"}


def _fmt(value) -> str:
  return "" if value is None else f"{value:,.0f}"


def training_rows(out: pathlib.Path) -> tuple[dict, list[str], dict]:
  """{(model, dtype, batch): {path label: row}}, notes, and a run header."""
  table: dict = {}
  notes: list[str] = []
  header: dict = {}
  # end_to_end's model-only figures, measured beside the trainer's, win over train_throughput's.
  for path in sorted(out.glob("throughput_*.json")) + sorted(out.glob("e2e_*.json")):
    data = _load(path)
    if "error" in data:
      notes.append(data["error"])
      continue
    rows = data["rows"] if isinstance(data, dict) else data  # train_throughput: a list.
    if isinstance(data, dict):
      header = {k: v for k, v in data.items() if k != "rows"}
    for row in rows:
      key = (row["model"], row["dtype"], int(row["batch_size"]))
      label = row.get("path", "model_only")
      if label == "on_device":
        label = f"on_device k={row.get('steps_per_call', 1)}"
      if "images_per_second" in row:
        table.setdefault(key, {})[label] = row
      else:
        notes.append(f"{path.name}: {key} {label}: {row.get('error') or row.get('skipped')}")
  return table, notes, header


def training_table(table: dict) -> list[str]:
  labels = sorted({label for cells in table.values() for label in cells},
                  key=lambda l: (PATHS.index(l.split()[0]) if l.split()[0] in PATHS else 9, l))
  lines = ["| model | dtype | batch | " + " | ".join(f"{l} img/s" for l in labels)
           + " | e2e / model-only | PyTorch anchor | model-only / PyTorch | plain JAX anchor |",
           "|---|---|---|" + "---|" * (len(labels) + 4)]
  order = {"resnet34": 0, "complexcnn": 1, "improvedcnn": 2}
  for key in sorted(table, key=lambda k: (order.get(k[0], 9), k[1] != "bfloat16", k[2])):
    cells = table[key]
    base = cells.get("model_only", {}).get("images_per_second")
    ratios = [f"{c['images_per_second'] / base:.2f} ({l.split()[0]})" for l, c in cells.items()
              if l != "model_only" and base]
    torch_anchor, jax_anchor = ANCHORS.get(key, (None, None))
    lines.append(
        f"| {key[0]} | {key[1]} | {key[2]} | "
        + " | ".join(_fmt(cells.get(l, {}).get("images_per_second")) for l in labels)
        + f" | {', '.join(ratios)} | {_fmt(torch_anchor)} | "
        + (f"{base / torch_anchor:.2f}" if base and torch_anchor else "")
        + f" | {_fmt(jax_anchor)} |")
  return lines


def host_loop_table(out: pathlib.Path) -> list[str]:
  path = out / "host_loop.json"
  if not path.is_file():
    return ["host_loop: no results (see host_loop.txt)"]
  data = _load(path)
  if "error" in data:
    return [data["error"]]
  lines = [f"host_loop (state {data.get('state')}, {data.get('steps')} steps):", "",
           "| batch | path | k | ms/step | img/s | x model-only | host ms/step |",
           "|---|---|---|---|---|---|---|"]
  for row in data.get("rows", []):
    lines.append(f"| {row['batch']} | {row['path']} | {row['steps_per_call']} | "
                 f"{row['ms_per_step']:.3f} | {row['images_per_second']:,.0f} | "
                 f"{row['ratio_to_model_only']:.2f} | {row['host_ms_per_step']:.3f} |")
  return lines


def report(out: pathlib.Path) -> str:
  table, notes, header = training_rows(out)
  lines = ["# gpu_check results", ""]
  if header:
    lines += [f"device {header.get('device')} x{header.get('device_count')}, "
              f"{header.get('image_size')} px, {header.get('steps')} timed steps, dataset "
              f"{header.get('dataset')} ({header.get('train_examples')} train images, repeated)",
              ""]
  lines += training_table(table) if table else ["no training figures"]
  lines += ["", *host_loop_table(out)]
  if notes:
    lines += ["", "Not measured:", *[f"- {note}" for note in notes]]
  stages = out / "summary.txt"
  if stages.is_file():
    lines += ["", "Stages:", "```", *[l for l in stages.read_text().splitlines()
                                      if "rc=" in l or "SKIPPED" in l], "```"]
  return "\n".join(lines) + "\n"


def main(argv) -> int:
  if len(argv) != 2:
    print(__doc__, file=sys.stderr)
    return 2
  out = pathlib.Path(argv[1])
  text = report(out)
  (out / "summary.md").write_text(text)
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
