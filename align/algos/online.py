"""What GRPO and RLOO share: reward flags, sampling flags, and the run around TRL's trainer.

TRL's GRPOTrainer and RLOOTrainer take the same reward functions, generation settings and
clipping, so one base dataclass holds those flags (each algorithm's dataclass adds its own and
may change a default) and :func:`run_online` drives either trainer:

1. check the plan: reward sources and weights, dataset columns, tools and environments,
   vLLM, batch shape (also run before any model loads, in dry runs too, as the registry's
   ``check`` hook)
2. load the tools and environments (``--tools``, ``--environment``), the tokenizer, the
   policy and the reward sources (user code is imported here)
3. build the TRL config and trainer, with metrics, health and sampled-answers callbacks
4. mean reward on held-out prompts before training (with eval data)
5. train (rollback / stop on collapse), save
6. mean reward on the same prompts, same seed, after training
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import click

from align.config import arg, validate_fields
from align.data.store import Rows
from align.errors import AlignError
from align.plan import world_size
from align.rewards.args import RewardArgs


@dataclass
class OnlineArgs(RewardArgs):
    """Flags shared by the critic-free online RL algorithms (GRPO, RLOO): the reward flags
    (:class:`align.rewards.args.RewardArgs`, which PPO takes too) and sampling."""

    num_generations: int = arg(8, "Completions sampled per prompt (the group size G; at least 2: "
                               "advantages compare the completions of one prompt).",
                               source="TRL default", bounds="[2, inf)")
    num_generations_eval: int | None = arg(
        None, "Completions per held-out prompt when scoring --eval-dataset / --eval-split "
        "before and after training (default: --num-generations).", source="align default",
        bounds="[1, inf)")
    max_completion_length: int = arg(512, "Longest completion in tokens.", source="TRL default",
                                     bounds="[1, inf)")
    temperature: float = arg(1.0, "Sampling temperature for rollouts (they are sampled: above 0).",
                             source="TRL default", bounds="(0, inf)")
    beta: float = arg(0.04, "KL coefficient to the reference; 0 loads no reference model.",
                      source="GRPO paper (Shao et al. 2024) and ms-swift; TRL defaults to 0",
                      bounds="[0, inf)")
    epsilon: float = arg(0.2, "Clip range of the policy ratio (lower side, and upper unless "
                         "--epsilon-high).", source="TRL default (PPO's 0.2)", bounds="(0, inf)")
    epsilon_high: float | None = arg(
        None, "Upper clip range (asymmetric clipping, 'clip-higher'; DAPO uses 0.28).",
        source="DAPO (Yu et al. 2025)", bounds="(0, inf)")
    num_iterations: int = arg(1, "Policy updates per batch of rollouts (μ in the GRPO paper).",
                              source="TRL default", bounds="[1, inf)")
    mask_truncated_completions: bool = arg(
        False, "Leave completions that hit --max-completion-length out of the loss.",
        source="TRL default; DAPO recommends on")
    generation_batch_size: int | None = arg(
        None, "Completions generated per rollout (default: the global batch, raised to a "
        "multiple of --num-generations so every group is whole).",
        source="TRL default, raised by align to whole groups", bounds="[1, inf)")
    use_vllm: bool = arg(False, "Generate with vLLM colocated on the training GPUs (needs vllm "
                         "and CUDA).", source="TRL default (off); colocate mode, as ms-swift")
    vllm_gpu_memory_utilization: float = arg(
        0.3, "Share of GPU memory vLLM may take when colocated.", source="TRL default",
        bounds="(0, 1]")

    def __post_init__(self) -> None:
        self.check_rewards()
        self._check_numbers()

    def _check_numbers(self) -> None:
        """Each number's own range is its ``bounds``; here the rule that ties two together."""
        validate_fields(self)
        if self.generation_batch_size is not None and \
                self.generation_batch_size % self.num_generations:
            raise ValueError(f"--generation-batch-size {self.generation_batch_size} must be a "
                             f"multiple of --num-generations {self.num_generations}")


def vllm_issue() -> str | None:
    """What this machine lacks for --use-vllm (the vllm package, a CUDA GPU), or None."""
    from align.plan import cuda_available, has_package

    if not has_package("vllm"):
        return ("--use-vllm needs vLLM, which is not installed: pip install vllm (Linux with a "
                "CUDA GPU). Without --use-vllm, rollouts are generated with transformers "
                "(slower, works everywhere)")
    if not cuda_available():
        return "--use-vllm needs a CUDA GPU; drop it to generate with transformers"
    return None


def agents_on(cfg: Any) -> bool:
    """True when the run gives the model tools or environments."""
    return cfg.agents is not None and cfg.agents.enabled


def reward_plan(cfg: Any, data: Any) -> tuple[Any, list[str]]:
    """Step 1 of the module docstring: the reward sources and their weights, checked against
    the flags and the dataset's columns; returns (plan, notes). Loads nothing, imports no user
    code (a --reward-fn file must only exist). Raises AlignError for a configuration error."""
    from align.rewards import sources as rs

    if cfg.model.ref_model:
        raise AlignError(f"--ref-model is not used by --algo {cfg.algo_name}: TRL's trainer "
                         "builds the reference from --model (with LoRA: the base with adapters "
                         "disabled)")
    # An environment's get_reward() is one more source (TRL adds it, weight 1); whether the
    # class has one is known once it is imported (prepare), so here it may be the only one.
    env = agents_on(cfg) and bool(cfg.agents.environment)
    plan, notes = rs.checked_plan(cfg.algo, cfg.model.reward_model, data.rows, environment=env)
    return plan, [f"note: {n}" for n in notes]


def check(cfg: Any, data: Any, report: Any) -> None:
    """GRPO's and RLOO's pre-training checks (``AlgoSpec.check``): reward plan, columns,
    vLLM, and the batch arithmetic, for dry runs and real runs alike."""
    a, t = cfg.algo, cfg.train
    plan, notes = reward_plan(cfg, data)
    report.plan(f"rewards: {plan.describe() or 'the environment (get_reward)'}")
    if agents_on(cfg):
        check_agents(cfg, report)
    for note in notes:
        report.note(note)
    if a.use_vllm:
        issue = vllm_issue()
        if issue:
            report.machine_issue(issue)
    lr = t.learning_rate
    world = world_size()
    per_step = t.per_device_train_batch_size * t.gradient_accumulation_steps * world
    generated = generation_batch(cfg) or per_step
    engine = "vLLM (colocated)" if a.use_vllm else "transformers generate"
    report.plan(f"rollouts: {generated} completions per generation round "
                f"({generated // a.num_generations} prompt(s) x {a.num_generations}), up to "
                f"{a.max_completion_length} tokens each, with {engine}; {per_step} completions "
                f"per optimizer step; learning rate {lr:g}")


def check_agents(cfg: Any, report: Any) -> None:
    """Tools and environments, before any model loads and without importing them: the files
    must exist (they are imported in :func:`prepare`). Only GRPO takes them: TRL 1.16's
    RLOOTrainer has no tool loop (the registry gives RLOO no agent flags)."""
    from align.agents.args import parse_environment_spec, parse_tools_spec
    from align.agents.tools import check_files

    ag = cfg.agents
    check_files(ag)
    tools = [name for _, name in parse_tools_spec(ag.tools)]
    envs = [f"{k}={c}" if k else c for k, (_, c) in parse_environment_spec(ag.environment).items()]
    shown = ", ".join(tools + [f"environment {e}" for e in envs])
    report.plan(f"tools: {shown}; up to {ag.max_tool_calls} tool-calling turns per rollout "
                f"(--max-tool-calls), {ag.tool_timeout:g} s per call (--tool-timeout); "
                "TRL's GRPOTrainer runs the turns, tool results are left out of the loss")


def generation_batch(cfg: Any) -> int | None:
    """Completions per rollout: TRL's default (the global batch) when it holds whole groups of
    --num-generations, else the smallest multiple of the global batch that does."""
    a, t = cfg.algo, cfg.train
    if a.generation_batch_size is not None:
        return a.generation_batch_size
    world = world_size()
    global_batch = t.per_device_train_batch_size * world * t.gradient_accumulation_steps
    if global_batch % a.num_generations == 0:
        return None
    return math.lcm(global_batch, a.num_generations)


def trl_fields(cfg: Any, weights: list[float]) -> dict[str, Any]:
    """TRL config fields both trainers share, from our flags."""
    a = cfg.algo
    lr = cfg.train.learning_rate
    g_eval = a.num_generations_eval or a.num_generations
    fields = dict(
        learning_rate=lr, beta=a.beta, num_generations=a.num_generations,
        num_generations_eval=g_eval,
        max_completion_length=a.max_completion_length, temperature=a.temperature,
        epsilon=a.epsilon, epsilon_high=a.epsilon_high, num_iterations=a.num_iterations,
        mask_truncated_completions=a.mask_truncated_completions, reward_weights=weights,
        generation_batch_size=generation_batch(cfg), log_completions=False,
    )
    if a.use_vllm:
        fields.update(use_vllm=True, vllm_mode="colocate",
                      vllm_gpu_memory_utilization=a.vllm_gpu_memory_utilization)
    if agents_on(cfg):  # TRL counts tool-calling turns; a turn may hold several calls
        fields["max_tool_calling_iterations"] = cfg.agents.max_tool_calls
    return fields


def uniform_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows whose extra columns each hold one type, as Arrow (datasets) needs: a column mixing
    ints and floats becomes floats, one mixing numbers and text (``"2"`` and ``4`` as
    solutions, common in hand-written files) becomes text."""
    types: dict[str, set[type]] = {}
    for row in rows:
        for key, value in row.items():
            if key != "prompt" and value is not None:
                types.setdefault(key, set()).add(type(value))
    fix: dict[str, Any] = {}
    for key, seen in types.items():
        if len(seen) > 1 and seen <= {int, float}:
            fix[key] = float
        elif len(seen) > 1 and seen <= {int, float, str, bool}:
            fix[key] = str
    if not fix:
        return rows
    return [{k: (fix[k](v) if k in fix and v is not None else v) for k, v in r.items()}
            for r in rows]


def count_long_prompts(tokenizer: Any, rows: list[dict[str, Any]], limit: int | None) -> int:
    """How many prompts are longer than ``limit`` tokens (TRL 1.16's GRPO/RLOO keep them whole)."""
    if not limit:
        return 0
    prompts = [r["prompt"] for r in rows]
    if prompts and isinstance(prompts[0], list):
        lengths = [len(tokenizer.apply_chat_template(p, add_generation_prompt=True,
                                                     tokenize=True, return_dict=True)
                       ["input_ids"]) for p in prompts]
    else:
        lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]]
    return sum(n > limit for n in lengths)


@dataclass
class Session:
    """A trainer ready to run, with what training and evaluation around it need."""

    trainer: Any
    tokenizer: Any
    plan: Any  # align.rewards.sources.RewardPlan
    toolset: Any  # align.agents.tools.Toolset, or None without tools
    watch: Any  # align.algos.watched.Watch: metrics, complete checkpoints, health
    resume_from: str | None
    eval_rows: list[dict[str, Any]] | None


def _evaluate(s: Session, cfg: Any, when: str) -> dict[str, float]:
    """Mean reward on held-out prompts, keys suffixed ``_before`` / ``_after``."""
    from align.rewards.evaluate import mean_reward, mean_reward_with_tools

    a = cfg.algo
    common = dict(k=a.num_generations_eval or a.num_generations,
                  max_new_tokens=a.max_completion_length, temperature=a.temperature,
                  seed=cfg.train.seed)
    if s.toolset is not None:  # multi-turn episodes, in align's loop
        result = mean_reward_with_tools(s.trainer.model, s.tokenizer, s.eval_rows,
                                        s.plan.sources, s.plan.weights, s.toolset, **common)
    else:
        result = mean_reward(s.trainer.model, s.tokenizer, s.eval_rows, s.plan.sources,
                             s.plan.weights, **common)
    click.echo(f"held-out mean reward {when} training: {result['eval_reward']:.4f}")
    return {f"{k}_{when}": v for k, v in result.items()}


def prepare(cfg: Any, data: Any, eval_data: Any, config_cls: type, trainer_cls: type,
            **algo_fields: Any) -> Session:
    """Steps 1-3 of the module docstring: check, load, build the trainer (no training)."""
    from align.algos import common, watched
    from align.health import online as online_health
    from align.models import load_causal_lm, load_tokenizer, lora_config
    from align.rewards import sources as rs

    a, name = cfg.algo, cfg.algo_name
    # 1. the plan: nothing heavy loaded yet, no user code run. The runner has already run
    # check() (which calls reward_plan too) and printed its notes and machine issues.
    plan, _ = reward_plan(cfg, data)
    rows = data.rows if isinstance(data.rows, Rows) else uniform_columns(data.rows)
    # 2. tools and environments (their files run now), tokenizer, reward sources, policy
    agent = load_agents(cfg, plan, data)
    tokenizer = load_tokenizer(cfg.model.model, cfg.model)
    if agent:
        hermes_parser(tokenizer, cfg.model.model)
    long = count_long_prompts(tokenizer, rows, cfg.data.max_prompt_length)
    if long:
        click.echo(f"note: {long} prompts are longer than --max-prompt-length "
                   f"{cfg.data.max_prompt_length} tokens; TRL's {trainer_cls.__name__} uses them "
                   "whole (filter them out to save memory)")
    columns = sorted({k for r in rows for k in r} - {"prompt"})
    rs.load_rewards(plan, a, columns, cfg.model, cfg.lora, cfg.train)
    click.echo(f"rewards: {plan.describe() or 'the environment (get_reward)'}")
    fields = {**trl_fields(cfg, plan.weights + [0.0]), **algo_fields}  # + the health probe
    try:  # held-out prompts are scored by _evaluate, before and after, not by TRL's eval loop
        args = common.trl_config(cfg, config_cls, has_eval=False, **fields)
    except ValueError as e:
        raise AlignError(f"--algo {name}: {e}") from e
    model = load_causal_lm(cfg.model.model, cfg.model, cfg.lora, cfg.train)
    # 3. trainer with metrics and health callbacks (canonical names first, then the writers)
    resume_from, resume_step = watched.resume_checkpoint(cfg)
    w = watched.watch(cfg, resume_from, resume_step, canonical=online_health.canonical)
    guard = rs.AbstainGuard(plan)  # a model always scores; other sources may all abstain
    env_scores = bool(agent) and any(e.has_reward for e in agent["toolset"].environments.values())
    batch_done = None if env_scores or any(s.kind == "model" for s in plan.sources) \
        else guard.batch_done
    probe = online_health.RepeatProbe(batch_done, call_marker=CALL_MARKER if agent else None)
    answers_cb = samples_callback(cfg, resume_step, probe.__name__)
    trainer = trainer_cls(
        model=model, args=args,
        reward_funcs=[guard.wrap(s.func) if s.kind != "model" else s.func
                      for s in plan.sources] + [probe],
        reward_processing_classes=[s.tokenizer for s in plan.sources] + [None],
        train_dataset=common.to_dataset(dataclasses.replace(data, rows=rows)),
        processing_class=tokenizer, peft_config=lora_config(cfg.lora),
        callbacks=[*w.callbacks(), answers_cb], **(agent["trl"] if agent else {}))
    answers_cb.trainer = trainer
    for source, prepared in zip(plan.sources, trainer.reward_funcs):
        source.func = prepared  # reward models as the trainer placed them (device)
    eval_rows = uniform_columns(eval_data.rows) if eval_data is not None else None
    return Session(trainer, tokenizer, plan, agent["toolset"] if agent else None, w,
                   resume_from, eval_rows)


def samples_callback(cfg: Any, resume_step: int | None, probe: str) -> Any:
    """A TrainerCallback that writes ``--log-samples`` answers of each logged step to
    samples.jsonl (align/samples.py). Its ``trainer`` is set once the trainer exists: the
    answers come from it (:func:`logged_answers`; ``probe``: the health probe's name)."""
    from transformers import TrainerCallback

    from align.samples import SamplesWriter

    writer = SamplesWriter(cfg.train.output_dir, cfg.algo.log_samples, resume_step)

    class LogSamples(TrainerCallback):
        trainer: Any = None

        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # the end-of-training summary is logged at the last step again: written once
            if state.is_world_process_zero and self.trainer is not None \
                    and writer.per_step > 0 and state.global_step != writer.last:
                writer.write(state.global_step, logged_answers(self.trainer, probe))

    return LogSamples()


def logged_answers(trainer: Any, probe: str) -> list[dict[str, Any]]:
    """The prompts, answers, rewards (each source's and their weighted total, as TRL sums
    them; the zero-weight health ``probe`` left out) and advantages of the latest generation
    batch of a GRPO/RLOO trainer.

    They are what TRL's own completions logging (``log_completions``) prints and saves: TRL
    1.16 keeps them in the trainer's ``_logs`` whether or not that option is on (it is off:
    it prints every batch to the console and writes a parquet file per logged step). An
    attribute TRL might rename, so a trainer without it gives no rows rather than an error."""
    logs = getattr(trainer, "_logs", None)
    names = list(getattr(trainer, "reward_func_names", []))
    if not isinstance(logs, dict) or not names:
        return []
    weights = getattr(trainer, "reward_weights", None)
    weights = weights.tolist() if weights is not None else [1.0] * len(names)
    prompts, answers = list(logs.get("prompt", [])), list(logs.get("completion", []))
    advantages = list(logs.get("advantages", []))
    columns = {n: list(logs.get("rewards", {}).get(n, [])) for n in names}
    rows = []
    for i, (prompt, answer) in enumerate(zip(prompts, answers)):
        values = {n: columns[n][i] if i < len(columns[n]) else math.nan for n in names}
        scored = [(w, v) for n, w in zip(names, weights) if (v := values[n]) == v]
        row = {"prompt": prompt, "answer": answer,
               "reward": sum(w * v for w, v in scored) if scored else None,
               "rewards": {n: (v if v == v else None) for n, v in values.items()
                           if n != probe}}
        if i < len(advantages):
            row["advantage"] = advantages[i]
        rows.append(row)
    return rows


# The text that opens a Hermes-style tool call (chatml-tools, Qwen2.5): a completion whose
# last turn still holds it wrote a call the template's parser could not read.
CALL_MARKER = "<tool_call>"


def load_agents(cfg: Any, plan: Any, data: Any) -> dict[str, Any] | None:
    """Import and check the tools and environments (before any model loads) and wrap them
    for TRL (:mod:`align.algos.tools`); None without any. AlignError when nothing scores the
    rollouts (no reward flag and no environment with get_reward)."""
    if not agents_on(cfg):
        return None
    from align.agents.tools import load_toolset
    from align.algos.tools import trl_tools

    toolset = load_toolset(cfg.agents)
    toolset.check_rows(data.rows, str(data.file))
    if not plan.sources and not any(e.has_reward for e in toolset.environments.values()):
        raise AlignError(f"no reward: the environment {cfg.agents.environment} has no "
                         "get_reward(); give --reward-model DIR, --reward-funcs or --reward-fn "
                         "file.py:function, or add get_reward to the environment")
    return {"toolset": toolset, "trl": trl_tools(toolset)}


def hermes_parser(tokenizer: Any, model_label: str) -> None:
    """Tools need a template that writes Hermes calls (chatml-tools, Qwen2.5's; AlignError
    naming --chat-template otherwise, before the model loads), and TRL needs to read them back:
    a template TRL does not know by its text (align's chatml-tools) gets TRL's parser for the
    same call format (its Qwen3 response template reads ``<tool_call>{json}</tool_call>``)."""
    from trl.chat_template_utils import add_response_schema, qwen3_template

    from align.agents.parsing import require_tool_template

    require_tool_template(tokenizer, model_label)
    if getattr(tokenizer, "response_template", None) is not None:
        return
    try:
        add_response_schema(tokenizer)
    except ValueError:  # not one of TRL's known templates
        tokenizer.response_template = qwen3_template


def run_online(cfg: Any, data: Any, eval_data: Any, config_cls: type, trainer_cls: type,
               **algo_fields: Any) -> dict[str, Any]:
    """Train with TRL's ``trainer_cls`` (GRPOTrainer, RLOOTrainer); see the module docstring."""
    s = prepare(cfg, data, eval_data, config_cls, trainer_cls, **algo_fields)
    # 4-6. evaluate, train (rollback / stop on collapse), evaluate again with the same seed
    before = _evaluate(s, cfg, "before") if s.eval_rows else {}
    from align.algos import watched

    metrics = watched.train_watched(s.trainer, cfg, s.tokenizer, s.resume_from, s.watch)
    after = _evaluate(s, cfg, "after") if s.eval_rows else {}
    return {**metrics, **before, **after, "reward_sources": s.plan.describe()}
