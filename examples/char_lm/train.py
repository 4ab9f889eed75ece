"""A character-level language model on Python's own documentation, with a data- and model-scaling study.

This is an ordinary small Lightning project (a datamodule that cuts text into fixed-length chunks, an
LSTM language model, a Trainer) that added one callback, ``ScalingSweep``, to measure the learning
curve of Hestness et al. 2017 ("Deep Learning Scaling is Predictable, Empirically"): validation
cross-entropy per character against the number of training characters, for the best LSTM width at
every data size. The text is ``pydoc_data.topics`` (the ~465k characters of English behind
``help("topics")``), which ships with CPython, so the example needs no download.

What it shows:

* the x-axis in the unit of the task: ``DataFraction(..., size_fn=..., size_unit="characters")``
  measures every run's training set in characters, not in chunks;
* nested subsets: each smaller run trains on a subset of the chunks of every larger one;
* the model-size search at every size (``grid={"width": [...]}``) read through
  ``current_run().param("width", ...)``, the learning curve of each width (small LSTMs level off
  early: capacity, not data, limits them), and a model-size law when the best width changes with data;
* a fixed step budget per run, validated every N steps, so the smallest subsets get as many
  updates as the largest one and the sweep's best validation value acts as early stopping.
* ``--model-size``: the paper's model-size protocol, where the best model grows with data. A
  character MLP (Bengio et al. 2003: the previous 8 characters' embeddings, one tanh layer of
  ``width`` units) over a wide width grid (8 to 512), no regulariser, the same 3,000 steps for every
  run, scored by the last validation loss (``ScalingSweep(select="last")``): the best value over
  training would act as early stopping and hide how a wide model overfits a small subset. The
  result's model-size law ``params(m) = sigma m^beta_p`` is printed next to the paper's 0.5-0.8.

Run (from the repository root):

    python examples/char_lm/train.py                 # the full study: 8-10 minutes on 2 CPU cores
    python examples/char_lm/train.py --smoke         # a check of the whole pipeline in under a minute
    python examples/char_lm/train.py --model-size    # the model-size study: 42 runs, ~11 min on one core
    python examples/char_lm/train.py --model-size --smoke   # its pipeline check, under a minute
    python examples/char_lm/train.py --slots 1 --threads 1  # on a shared machine: one run, one thread
    python examples/char_lm/train.py --text-file my_corpus.txt      # your own UTF-8 text instead
    python examples/char_lm/train.py --hf-dataset wikitext --hf-config wikitext-2-raw-v1  # needs `datasets`
    python examples/char_lm/train.py --wandb         # also report to Weights & Biases (offline run)

The study's results land in ``<root>/scaling_sweeps/char_lm/`` (``result.json``, ``runs.csv``,
``learning_curve.png``, one log per run); each run's metrics are in ``<root>/logs/<run id>/``.
``--model-size`` uses ``runs/char_lm_model_size`` and ``scaling_sweeps/char_lm_model_size/`` (also
``model_size_law.png``).
Re-running the same command resumes: finished runs are not repeated.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_scaling import DataFraction, ScalingSweep, SweepResult, current_run
from lightning_scaling.laws import fit_learning_curve
from lightning_scaling.sweep.launchers import LocalLauncher

UNK = "<unk>"

# the exponents Hestness et al. 2017 quote for language models, of the power-law region eps ~ alpha m^beta_g:
# about -0.07 for word-level LSTMs and -0.09 for character-level models, on corpora of billions of words
PAPER_LM_BETA = (-0.09, -0.06)


# ------------------------------------------------------------------------------------------------ data
def pydoc_documents() -> list[str]:
    """The topics of Python's built-in help, in sorted-key order (fixed order: a fixed split)."""
    from pydoc_data.topics import topics

    return [topics[key] for key in sorted(topics)]


def text_file_documents(path: str | Path) -> list[str]:
    """A local UTF-8 text file as documents of one line each, so the held-out part is the file's end."""
    text = Path(path).read_text(encoding="utf-8")
    return text.splitlines(keepends=True)


def hf_documents(name: str, config: str | None = None, split: str = "train", column: str = "text") -> list[str]:
    """The non-empty rows of one text column of a Hugging Face dataset, in the dataset's order."""
    try:
        import datasets
    except ImportError:
        raise SystemExit("--hf-dataset needs the `datasets` package: pip install datasets") from None
    table = datasets.load_dataset(name, config, split=split)
    if column not in table.column_names:
        raise SystemExit(f"{name} has no column {column!r}; its columns are {table.column_names} (use --hf-column)")
    return [row for row in table[column] if row and row.strip()]


def split_documents(documents: Sequence[str], val_share: float = 0.1) -> tuple[str, str]:
    """Training and validation text: the trailing documents holding ``val_share`` of the characters are held out.

    Whole documents go to one side only, so no validation text is ever seen in training.
    """
    total = sum(len(d) for d in documents)
    held, cut = 0, len(documents)
    while cut > 1 and held < val_share * total:
        cut -= 1
        held += len(documents[cut])
    train, val = "".join(documents[:cut]), "".join(documents[cut:])
    if not train or not val:
        raise ValueError(f"{len(documents)} document(s) cannot be split into training and validation text; "
                         "give more text (a text file is split at line boundaries)")
    return train, val


class CharChunks(Dataset):
    """Fixed-length windows of a character-id sequence: ``(input, target)`` with the target shifted by one."""

    def __init__(self, ids: torch.Tensor, seq_len: int, stride: int) -> None:
        if len(ids) < seq_len + 1:
            raise ValueError(f"{len(ids)} characters are fewer than {self._one(seq_len)}")
        self.ids, self.seq_len, self.stride = ids, seq_len, stride

    @staticmethod
    def _one(seq_len: int) -> str:
        return f"one chunk of {seq_len + 1}"

    def __len__(self) -> int:
        return (len(self.ids) - self.seq_len - 1) // self.stride + 1

    def window(self, index: int) -> torch.Tensor:
        start = index * self.stride
        return self.ids[start : start + self.seq_len + 1]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = self.window(index)
        return window[:-1], window[1:]


class CharContexts(CharChunks):
    """Every character with the ``context`` characters before it: ``(context ids, next id)``, at a stride."""

    def __init__(self, ids: torch.Tensor, context: int, stride: int = 1) -> None:
        super().__init__(ids, context, stride)

    @staticmethod
    def _one(seq_len: int) -> str:
        return f"one context of {seq_len} and its next character"

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = self.window(index)
        return window[:-1], window[-1]


def target_characters(sample: tuple[torch.Tensor, torch.Tensor]) -> int:
    """The sweep's unit: characters predicted (and so learned from) in one training chunk."""
    return sample[1].numel()


class CharDataModule(pl.LightningDataModule):
    """Character-level language-modelling data: training chunks at a fixed stride, a fixed validation slice.

    The vocabulary (every character of the training text, plus ``<unk>`` at id 0 for characters that
    only validation text has) is built here, because the model's embedding size depends on it.
    """

    def __init__(
        self,
        documents: Sequence[str],
        seq_len: int = 128,
        batch_size: int = 32,
        val_share: float = 0.1,
        val_chunks: int = 128,
        max_train_chars: int | None = None,
        context: int | None = None,
    ) -> None:
        super().__init__()
        self.seq_len, self.batch_size, self.val_chunks = seq_len, batch_size, val_chunks
        # context=k: every training character is one sample, predicted from the k before it (the MLP's data)
        self.context = context
        self.train_text, self.val_text = split_documents(documents, val_share)
        if max_train_chars is not None:
            self.train_text = self.train_text[:max_train_chars]
        self.vocab = [UNK, *sorted(set(self.train_text))]
        self.stoi = {ch: i for i, ch in enumerate(self.vocab)}

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor([self.stoi.get(ch, 0) for ch in text], dtype=torch.long)

    def setup(self, stage: str) -> None:
        if self.context is not None:
            self.train_set = CharContexts(self.encode(self.train_text), self.context)
            # ``val_chunks`` contexts evenly spread over the held-out text, the same for every run
            val = CharContexts(self.encode(self.val_text), self.context)
            self.val_set = CharContexts(val.ids, self.context, stride=max(1, len(val) // self.val_chunks))
            return
        # non-overlapping chunks: every training character is a target exactly once per epoch, so the
        # sweep's size in characters is the amount of text a run learns from
        self.train_set = CharChunks(self.encode(self.train_text), self.seq_len, stride=self.seq_len)
        # a fixed, evenly spread slice of the held-out text keeps validation cheap and identical across runs
        val_ids = self.encode(self.val_text)
        available = (len(val_ids) - self.seq_len - 1) // self.seq_len + 1
        stride = self.seq_len * max(1, available // self.val_chunks)
        self.val_set = CharChunks(val_ids[: stride * (self.val_chunks - 1) + self.seq_len + 1], self.seq_len, stride)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=64 if self.context is None else 4096)


# ----------------------------------------------------------------------------------------------- model
class CharLM(pl.LightningModule):
    """The training side of both models: cross-entropy of the next character, Adam, no regulariser."""

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch
        logits = self(inputs)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        loss = self._loss(batch)
        # every chunk has the same length, so the batch-size-weighted mean is the per-character mean
        self.log("val_loss", loss, batch_size=batch[0].size(0))  # nats per character
        self.log("val_bpc", loss / math.log(2), batch_size=batch[0].size(0))  # bits per character

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


class CharLSTM(CharLM):
    """Embedding, one LSTM layer of ``width`` units, and a softmax over the vocabulary."""

    def __init__(self, vocab_size: int, width: int = 128, lr: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.embed = nn.Embedding(vocab_size, width)
        self.lstm = nn.LSTM(width, width, batch_first=True)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(self.embed(ids))
        return self.head(hidden)


class CharMLP(CharLM):
    """Bengio et al. 2003's neural language model: the embeddings of the ``context`` previous characters,
    one tanh layer of ``width`` units, and a softmax over the vocabulary (cheap enough on a CPU to train
    every width of a wide grid for thousands of steps)."""

    def __init__(self, vocab_size: int, width: int = 128, context: int = 8, embed: int = 16,
                 lr: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.embed = nn.Embedding(vocab_size, embed)
        self.net = nn.Sequential(nn.Linear(context * embed, width), nn.Tanh(), nn.Linear(width, vocab_size))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.net(self.embed(ids).flatten(1))


# -------------------------------------------------------------------------------------------- settings
# smoke: a 40k-character slice, 4 sizes, 2 widths, 150 steps: enough for a fitted law in well under a minute
SMOKE = {"fractions": ScalingSweep.geometric(1 / 8, 1.0, num=4), "widths": [32, 64], "seeds": 1,
         "steps": 150, "eval_every": 25, "max_train_chars": 40_000, "val_chunks": 32}
# full: 6.5k to 415k training characters, each width trained for the same number of steps
FULL = {"fractions": ScalingSweep.geometric(1 / 64, 1.0, num=7), "widths": [32, 64, 128], "seeds": 1,
        "steps": 800, "eval_every": 50, "max_train_chars": None, "val_chunks": 128}
LSTM = {"model": "lstm", "select": "best", "batch_size": 32, "context": None}

# --model-size: the paper's model-size protocol. A wide grid of MLP widths (8 to 512, 3.6k to 121k
# parameters), no regulariser, every run trained for the same number of steps (hundreds of epochs of
# the smallest subsets: trained until it overfits), and each run scored by its LAST validation loss
# (select="last"): the best-over-training value would act as early stopping and hide the overfitting
# that makes a large model the wrong choice for little data.
MODEL_SIZE = {"model": "mlp", "select": "last", "batch_size": 256, "context": 8}
SIZE_SMOKE = {**MODEL_SIZE, "fractions": ScalingSweep.geometric(1 / 16, 1.0, num=4), "widths": [8, 128],
              "seeds": 1, "steps": 300, "eval_every": 100, "max_train_chars": 40_000, "val_chunks": 2048}
# 3.3k to 418k training characters (the whole training text), 7 widths: 42 runs
SIZE_FULL = {**MODEL_SIZE, "fractions": ScalingSweep.geometric(1 / 128, 1.0, num=6),
             "widths": [8, 16, 32, 64, 128, 256, 512], "seeds": 1, "steps": 3000, "eval_every": 500,
             "max_train_chars": None, "val_chunks": 16384}
# the paper's model-size exponents: the best model's parameter count grows as m^beta_p, beta_p about 0.5-0.8
PAPER_BETA_P = (0.5, 0.8)


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The study the command line asks for: the LSTM learning curve, or the MLP model-size study."""
    if args.model_size:
        return SIZE_SMOKE if args.smoke else SIZE_FULL
    return {**LSTM, **(SMOKE if args.smoke else FULL)}


def compare_with_paper(result: SweepResult) -> str:
    """The fitted exponents next to the paper's range for language models, in words."""
    law = result.law
    lo, hi = law.intervals[law.form.exponent]
    # the paper's exponents are slopes of a pure power law; fit that form to the same best-model points
    slope = fit_learning_curve(law.sizes, law.errors, form="power_law")
    s_lo, s_hi = slope.intervals[slope.form.exponent]
    paper_lo, paper_hi = PAPER_LM_BETA
    if s_hi < paper_lo:
        verdict = "steeper than"
    elif s_lo > paper_hi:
        verdict = "shallower than"
    else:
        verdict = "consistent with"
    return "\n".join([
        f"exponent beta = {law.exponent:.3f} [{lo:.3f}, {hi:.3f}] of eps = alpha m^beta + gamma, "
        f"floor gamma = {law.floor:.3f} nats/char",
        f"as a pure power law b m^c (the form of the paper's exponents): c = {slope.exponent:.3f} "
        f"[{s_lo:.3f}, {s_hi:.3f}], {verdict} the {paper_lo} to {paper_hi} Hestness et al. 2017 measured "
        "for language models",
        "  note: every run has the same step budget, so the largest runs can be limited by steps rather than "
        "by data; the fitted floor gamma then includes that limit, and beta steepens to match",
    ])


def compare_model_size(result: SweepResult) -> str:
    """The best width at each size and the fitted model-size exponent next to the paper's, in words."""
    widths = ", ".join(f"{b['params'].get('width')}" for b in result.best)
    law = result.model_size_law
    if law is None:
        return (f"best width per size: {widths}\nno model-size law: the same width was best at every size "
                "(see the notes above)")
    lo, hi = law.intervals["beta_p"]
    paper_lo, paper_hi = PAPER_BETA_P
    verdict = ("below" if hi < paper_lo else "above" if lo > paper_hi else "consistent with")
    return "\n".join([
        f"best width per size ({result.select} validation loss): {widths}",
        f"model-size exponent beta_p = {law.beta_p:.3f} [{lo:.3f}, {hi:.3f}] of params = sigma m^beta_p, "
        f"{verdict} the {paper_lo}-{paper_hi} Hestness et al. 2017 measured",
        "  note: one seed per run and a width grid in steps of 2x; the largest subsets are limited by the step "
        "budget (about 2 epochs of the whole text), not trained to convergence",
    ])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="Trainer default_root_dir (default: runs/char_lm, or runs/char_lm_model_size)")
    parser.add_argument("--smoke", action="store_true", help="a tiny study that checks the pipeline in about a minute")
    parser.add_argument("--model-size", action="store_true",
                        help="the model-size study: MLP widths 8-512, trained to overfit, scored by the last "
                             "validation loss (select='last')")
    parser.add_argument("--slots", type=int, help="runs at once (default: one per CPU core or GPU)")
    parser.add_argument("--threads", type=int, help="CPU threads per run (default: the cores shared between the slots)")
    parser.add_argument("--wandb", action="store_true", help="log to Weights & Biases (offline; `wandb sync` later)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--text-file", help="a local UTF-8 text file to model instead of Python's documentation")
    source.add_argument("--hf-dataset", help="a Hugging Face dataset name, e.g. wikitext (needs `datasets`)")
    parser.add_argument("--hf-config", help="the dataset's configuration, e.g. wikitext-2-raw-v1")
    parser.add_argument("--hf-split", default="train", help="the split to read (default: %(default)s)")
    parser.add_argument("--hf-column", default="text", help="the text column (default: %(default)s)")
    args = parser.parse_args(argv)
    args.root = args.root or ("runs/char_lm_model_size" if args.model_size else "runs/char_lm")
    return args


def build_datamodule(args: argparse.Namespace) -> CharDataModule:
    """The data module for the text the command line names (Python's documentation by default)."""
    if args.text_file:
        documents = text_file_documents(args.text_file)
    elif args.hf_dataset:
        documents = hf_documents(args.hf_dataset, args.hf_config, args.hf_split, args.hf_column)
    else:
        documents = pydoc_documents()
    settings = settings_of(args)
    return CharDataModule(documents, max_train_chars=settings["max_train_chars"], val_chunks=settings["val_chunks"],
                          batch_size=settings["batch_size"], context=settings["context"])


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = settings_of(args)
    name = "char_lm_model_size" if args.model_size else "char_lm"

    # the controller (the process you start), or one run of the study: then seed every RNG with its seed
    run = current_run()
    run.seed_everything()
    data = build_datamodule(args)
    width = run.param("width", default=settings["widths"][-1])
    model: CharLM = (CharMLP(vocab_size=len(data.vocab), width=width, context=settings["context"])
                     if settings["model"] == "mlp" else CharLSTM(vocab_size=len(data.vocab), width=width))

    sweep = ScalingSweep(
        name=name,
        fractions=settings["fractions"],
        grid={"width": settings["widths"]},
        seeds=settings["seeds"],
        monitor="val_loss",
        mode="min",
        select=settings["select"],
        # a shared machine: fewer parallel runs, or fewer threads each, than the cores it has
        slots=args.slots if args.threads is None else None,
        launcher=None if args.threads is None else LocalLauncher(slots=args.slots, threads_per_slot=args.threads),
    )
    # inside a run, a logger without a version logs to logs/<run id> (the sweep names it); the controller
    # trains nothing, so its own folder gets a name of its own instead of version_0
    loggers = [CSVLogger(save_dir=args.root, name="logs", version="controller" if run.is_controller else None)]
    if args.wandb:
        from pytorch_lightning.loggers import WandbLogger

        loggers.append(WandbLogger(project="lightning-scaling-examples", save_dir=args.root, offline=True))
    trainer = pl.Trainer(
        default_root_dir=args.root,
        accelerator="auto",
        devices=1,
        # a fixed step budget validated every N steps, also across epochs: small subsets get as many
        # updates as large ones, and the sweep keeps each run's best validation loss
        max_steps=settings["steps"],
        val_check_interval=settings["eval_every"],
        check_val_every_n_epoch=None,
        log_every_n_steps=settings["eval_every"],
        # the usual guard against exploding LSTM gradients; the MLP trains as it is
        gradient_clip_val=1.0 if settings["model"] == "lstm" else None,
        num_sanity_val_steps=0,
        enable_checkpointing=False,  # the study keeps metrics, not dozens of model files
        enable_progress_bar=False,  # each run's output goes to a log file
        enable_model_summary=False,
        logger=loggers,
        callbacks=[sweep],
    )
    # the x-axis in characters: DataFraction sums target_characters over each run's chunks
    trainer.fit(model, datamodule=DataFraction(data, size_fn=target_characters, size_unit="characters"))

    if run.is_controller:
        result = sweep.result
        folder = Path(args.root) / "scaling_sweeps" / name
        # the sweep printed result.summary() to stderr when it ended; here where things are and the comparison
        print(f"results: {folder / 'result.json'}")
        print(f"figure:  {folder / 'learning_curve.png'}")
        if result.law is not None:
            print(compare_with_paper(result))
        if args.model_size:
            print(compare_model_size(result))


if __name__ == "__main__":
    main()
