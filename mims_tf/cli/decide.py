"""`mims decide`: another operating point for a run, stored under its own name (the run's own stays)."""

from mims_tf.cli.flags import FORMATTER, add_json_flag, print_json
from mims_tf.utils import import_keras_quietly


def decide_parser(sub):
    p = sub.add_parser(
        "decide", help="make a named decision: a threshold for a target sensitivity or specificity, on validation",
        formatter_class=FORMATTER,
        epilog="examples:\n  mims decide runs/adrenal --sensitivity 0.95 --name screening\n"
        "  mims evaluate runs/adrenal --decision screening\n"
        "  mims export runs/adrenal --decision screening\n\n"
        "A decision is made once and never replaced: the run's own (decision.json, made after training) stays,\n"
        "and this one goes to RUN/decisions/NAME.json with the hash of the model it was made for.",
    )
    p.add_argument("run", help="run folder")
    p.add_argument("--name", required=True, help="the decision's name (letters, digits, _ . -)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--sensitivity", type=float, help="the highest threshold reaching this validation sensitivity")
    target.add_argument("--specificity", type=float, help="the lowest threshold reaching this validation specificity")
    target.add_argument("--youden", action="store_true", help="where sensitivity + specificity is largest")
    p.add_argument("--model", dest="which", default="best", choices=("best", "last"), help="default: best")
    add_json_flag(p)
    return p


def run_decide(args):
    from mims_tf.runs.decision import check_decision_name
    from mims_tf.runs.folder import RunFolder
    from mims_tf.stats.thresholds import check_fraction, check_rule

    rule, target = (("sensitivity", args.sensitivity) if args.sensitivity is not None else
                    ("specificity", args.specificity) if args.specificity is not None else ("youden", None))
    if target is not None:
        check_fraction(rule, target)  # before TensorFlow starts
    check_rule(rule, target)
    check_decision_name(args.name, own=False)
    RunFolder(args.run).check(which=args.which)
    import_keras_quietly()
    from mims_tf.runs.decision import decide_run

    decision = decide_run(args.run, args.name, rule, target, which=args.which)
    if args.json:
        print_json(decision)
        return 0
    if decision["threshold"] is None:
        print(f"decision {args.name!r} of {args.run} ({args.which} model): the most probable class "
              f"({decision['val_bags']} validation bags)")
        return 0
    print(f"decision {args.name!r} of {args.run} ({args.which} model): threshold {decision['threshold']:.4f} "
          f"({decision['threshold_from']}, {decision['val_bags']} validation bags)")
    d = decision
    print(f"  on validation: sensitivity {d['val_sensitivity']:.3f} (95 % CI {d['val_sensitivity_low']:.2f}"
          f"-{d['val_sensitivity_high']:.2f}), specificity {d['val_specificity']:.3f} (95 % CI "
          f"{d['val_specificity_low']:.2f}-{d['val_specificity_high']:.2f})")
    if not decision["reliable"]:
        print(f"  warning: the threshold is unreliable: {decision['why']}")
    print(f"  use it: mims evaluate {args.run} --decision {args.name}")
    return 0
