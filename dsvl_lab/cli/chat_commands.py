"""``chat``: talk to a trained pipeline output or a real DeepSeek-VL folder; answers stream as they come.
"""
from __future__ import annotations

import sys

from .common import COUNT, DTYPES, EXIT_OK, CLIError, arg, real_number, subcommand, whole_number

# Imports of torch, the model and the libraries sit inside the command functions: the one place in
# the package where lazy imports are justified, so that `dsvl-lab --help` answers at once.


# ============================================================================ chat
@subcommand(
    "chat", "chat with a trained pipeline output or a real DeepSeek-VL folder (answers stream as they come)",
    example="dsvl-lab chat --checkpoint runs/demo --image chart.png --prompt \"What colour is the largest slice?\"\n"
            "dsvl-lab chat --checkpoint runs/demo/stage2_joint --prompt \"The cat sat on\" --max-new-tokens 20\n"
            "dsvl-lab chat --checkpoint ~/models/deepseek-vl-7b-chat --image photo.jpg --dtype bf16 --interactive\n"
            "dsvl-lab chat --checkpoint runs/demo --prompt \"Tell a story\" --sample --temperature 0.8 --seed 1",
    details="CHECKPOINT is a pipeline output (runs/demo: the last finished stage of stage1_adaptor,\n"
            "stage2_joint, stage3_sft is used), one stage's folder (runs/demo/stage3_sft: its model/),\n"
            "a folder written by DSVLModel.save_pretrained, or a DeepSeek-VL folder in the original or\n"
            "the transformers format (with its tokenizer.json and preprocessor_config.json).\n"
            "The prompt is written in the chat template (\"User: <image>... Assistant:\"); the answer is\n"
            "printed to stdout token by token, what was loaded to stderr. Greedy unless --sample.\n"
            "--interactive keeps the conversation: each new prompt continues it; Ctrl-D or 'exit' ends.",
    args=[
        arg("--checkpoint", required=True, help="pipeline output, stage folder or model folder"),
        arg("--image", default=None, help="an image file (PNG, JPEG, ...); leave out for text-only chat"),
        arg("--prompt", default=None, help="what to ask (required unless --interactive)"),
        arg("--interactive", action="store_true", help="keep chatting: read more prompts from the terminal"),
        arg("--max-new-tokens", type=COUNT, default=64, help="longest answer in tokens (default 64)"),
        arg("--dtype", choices=sorted(DTYPES), default=None, help="cast the weights (default: the stored dtype)"),
        arg("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps (default auto)"),
        arg("--sample", action="store_true", help="sample instead of greedy decoding"),
        arg("--temperature", type=real_number(0), default=1.0,
            help="sampling temperature >= 0 (default 1.0; with --sample; 0 is as good as greedy)"),
        arg("--top-p", type=real_number(0, 1, low_open=True), default=1.0,
            help="nucleus sampling: keep the top tokens up to this mass, in (0, 1] (default 1: all)"),
        arg("--top-k", type=whole_number(0), default=0, help="sample among the k most likely tokens (0 = all)"),
        arg("--seed", type=whole_number(0, 2**63 - 1), default=None,
            help="seed of the sampling, for repeatable answers"),
    ],
)
def cmd_chat(args) -> int:
    import torch

    from ..chat import chat, check_image_file, load_chat_model, repl

    # Check what is cheap to check before loading a model that may take minutes.
    if not args.interactive and not args.prompt:
        raise CLIError("give --prompt \"...\" (or --interactive to type prompts)")
    check_image_file(args.image)
    dtype = getattr(torch, DTYPES[args.dtype]) if args.dtype else None
    model, processor, description = load_chat_model(args.checkpoint, dtype=dtype, device=args.device)
    print(f"loaded {description}", file=sys.stderr)
    generation = dict(max_new_tokens=args.max_new_tokens, do_sample=args.sample, temperature=args.temperature,
                      top_p=args.top_p, top_k=args.top_k, seed=args.seed)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    if args.interactive:
        print("(Ctrl-D or 'exit' ends the chat)", file=sys.stderr)
        repl(model, processor, image=args.image, first_prompt=args.prompt, write=write, **generation)
        return EXIT_OK
    chat(model, processor, args.prompt, image=args.image, stream=write, **generation)
    write("\n")
    return EXIT_OK
