"""A model card for a run's aligned checkpoint (README.md with the Hub's YAML front matter, written
through huggingface_hub's ModelCard), and `udasa push`: the checkpoint and its card to the Hub."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from udasa_ray.errors import StepFailed
from udasa_ray.runs import RunDir, StepMissing

TOKEN_ENV = "HF_TOKEN"


def _held_out(run: RunDir) -> list[str]:
    path = run / "heldout" / "summary.json"
    if not path.exists():
        return ["Not run for this checkpoint (`udasa check`)."]
    h = json.loads(path.read_text())
    lines = [f"{h['prompts']} prompts not trained on × {h['responses_per_prompt']} answers, base vs this model; Δ is "
             "aligned − base with a 95% bootstrap interval over prompts and a sign-flip p (lower U is better).", "",
             "| metric | base | aligned | Δ [95% CI] | p |", "|---|---|---|---|---|"]
    for k, d in h["paired"].items():
        lines.append(f"| {k} | {h['base'][k]:.3f} | {h['aligned'][k]:.3f} | {d['mean']:+.3f} [{d['lo']:.3f}, "
                     f"{d['hi']:.3f}] | {d['p']:.3g} |")
    return lines


def _evaluation(run: RunDir) -> list[str]:
    path = run / "eval" / "summary.json"
    if not path.exists():
        return ["Not evaluated (`udasa eval --model RUN_DIR`)."]
    s = json.loads(path.read_text())
    lines = [f"Judge: {s['judge']}; {s['items']} items, {s['samples']} answer(s) each.", "",
             "| metric | mean [95% CI] |", "|---|---|"]
    return lines + [f"| {k} | {m['mean']:.3f} [{m['lo']:.3f}, {m['hi']:.3f}] |" for k, m in s["metrics"].items()]


def _config(run: RunDir) -> dict:
    """The resolved config the aligned policy was trained with (its last stage's, in the manifest)."""
    trained = [s for name, s in run.manifest()["steps"].items() if name.startswith("train_stage")]
    if not trained:
        raise StepMissing(f"{run.path}: no trained policy (run `udasa train` first)")
    return trained[-1]["config"]


def model_card(run: RunDir) -> str:
    """The card of the run's aligned policy, from its manifest, pairs, training, check and evaluation."""
    from huggingface_hub import ModelCard, ModelCardData

    train = json.loads((run / "train" / "summary.json").read_text())
    cfg = _config(run)
    pairs = json.loads((run / "stages" / "summary.json").read_text())
    t, base = cfg["train"], cfg["models"]["policy"]
    data = ModelCardData(base_model=None if base.startswith("bundled:") else base, library_name="transformers",
                         pipeline_tag="text-generation", tags=["udasa", "dpo", "trl", "self-alignment", "ray"])
    stage_rows = "\n".join(
        f"| {s['stage']}. {s['name']} | {s['pairs']} | "
        + (f"{s['delta_u'][0]:.3f} – {s['delta_u'][1]:.3f}" if s["pairs"] else "—") + " | "
        + next((f"{x['steps']} | {x['peak_lr']:g} | {x['beta']}" for x in train["stages"] if x["stage"] == s["stage"]),
               "— | — | —") + " |" for s in pairs["stages"])
    body = "\n".join([
        f"# {base} aligned by UDASA", "",
        f"`{base}` aligned without human labels by UDASA (Uncertainty-Driven Adaptive Self-Alignment), with "
        "udasa-ray: it sampled several answers per prompt, scored each on semantic, factual and value "
        "uncertainty, paired the most certain answer against a random other, and trained phased DPO (TRL) "
        "from the clearest pairs to the most ambiguous.", "",
        "## Data", "",
        f"Prompts: `{cfg['data']['source']}`; {cfg['generation']['n']} answers each; {pairs['pairs']} "
        f"{pairs['method']} pairs, split at {pairs['thresholds']} on the `{pairs['scale']}` Δu scale.", "",
        "| stage | pairs | Δu (raw) | steps | peak lr | β |", "|---|---|---|---|---|---|", stage_rows, "",
        "## Training", "",
        f"DPO losses {t.get('loss_type', ['sigmoid'])}, batch {t['batch_size']} × {t['grad_accum']} accumulation × "
        f"{t['num_workers']} worker(s), max length {t['max_length']}, reference: the {t['reference']} policy, "
        + (f"LoRA r {t['lora']['r']} (merged)" if t["lora"]["enabled"] else "full fine-tuning")
        + f", DeepSpeed ZeRO-{t['deepspeed']['zero_stage']}, early stopping on {t['eval_fraction']:.0%} "
        "held-out pairs.",
        "", "## Held-out check", "", *_held_out(run), "", "## Evaluation", "", *_evaluation(run), "",
        "## Reproduce", "",
        "`udasa_config.yaml` beside this card is the run's resolved configuration:", "",
        "```bash", "python jobs/align.py --config udasa_config.yaml --run-dir runs/reproduced", "```", ""])
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def write_card(run: RunDir) -> Path:
    """README.md (the card) and udasa_config.yaml in the aligned checkpoint's directory; returns that directory."""
    if not (run / "train" / "summary.json").exists():
        raise StepMissing(f"{run.path}: no trained policy (run `udasa train` first)")
    aligned = Path(json.loads((run / "train" / "summary.json").read_text())["aligned"])
    (aligned / "udasa_config.yaml").write_text(yaml.safe_dump(_config(run), sort_keys=False))
    (aligned / "README.md").write_text(model_card(run))
    return aligned


def push(run: RunDir, repo_id: str, private: bool = False) -> str:
    """Upload the aligned checkpoint with a fresh card to the Hub repo `repo_id` (created if missing), with
    the token in $HF_TOKEN; returns the commit's URL."""
    from huggingface_hub import HfApi

    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise StepFailed(f"udasa push needs a Hugging Face token with write access in ${TOKEN_ENV}")
    folder = write_card(run)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                             commit_message=f"UDASA-aligned policy from {run.path.name}",
                             ignore_patterns=["tensorboard/*", "metrics.jsonl", "trainer_state.json"])
    return str(getattr(info, "commit_url", info))
