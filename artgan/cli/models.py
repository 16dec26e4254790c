"""`predict`, `evaluate` and `features`: use a saved model on images."""

import argparse

from artgan.cli.heavy import load_tensorflow
from artgan.errors import ArtganError
from artgan.model.saved import read_metadata


def add_predict(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "predict",
        help="top-k classes for image files with a saved model",
        description="Print the top-k classes and probabilities for each image, using the "
        "class names and preprocessing stored in the model.",
    )
    parser.add_argument("model", help="a .keras file saved by artgan (runs/<task>/best/...)")
    parser.add_argument("images", nargs="+", help="image files (any format Pillow reads)")
    parser.add_argument("--top", type=int, default=5, help="how many classes to show (default 5)")
    parser.set_defaults(run=run_predict)


def run_predict(args: argparse.Namespace) -> None:
    read_metadata(args.model)  # a wrong path fails fast, before TensorFlow loads
    load_tensorflow()
    from artgan.evaluation.predict import predict_files

    unreadable = 0
    for path, ranked in predict_files(args.model, args.images, args.top):
        print(path)
        if isinstance(ranked, str):
            print(f"  could not read: {ranked}")
            unreadable += 1
            continue
        for name, probability in ranked:
            print(f"  {probability:7.2%}  {name}")
    if unreadable == len(args.images):
        raise ArtganError(f"none of the {unreadable} image(s) could be read (reasons above)")


def add_evaluate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="score a saved model on an ArtGAN-format label file",
        description="Run a saved model on every image of a label file; print accuracy, "
        "top-5 accuracy, macro-F1 and counts, and save per-image predictions as CSV.",
    )
    add_labelled_images(parser)
    parser.add_argument("--out", help="predictions CSV (default: <model>.predictions.csv)")
    parser.set_defaults(run=run_evaluate)


def add_labelled_images(parser: argparse.ArgumentParser) -> None:
    """The arguments naming a saved model and the labelled images to run it on."""
    parser.add_argument("model", help="a .keras file saved by artgan")
    parser.add_argument("--labels", required=True, help="label file (ArtGAN CSV / artist file)")
    parser.add_argument("--images", required=True, help="folder the label paths are relative to")
    parser.add_argument(
        "--classes", help="class file (default: the class names stored in the model)"
    )
    parser.add_argument(
        "--skip-bad", action="store_true", help="skip unreadable rows/images and report them"
    )


def run_evaluate(args: argparse.Namespace) -> None:
    read_metadata(args.model)
    load_tensorflow()
    from artgan.evaluation.predict import evaluate_model

    result = evaluate_model(
        args.model,
        args.labels,
        args.images,
        classes=args.classes,
        out=args.out,
        on_error="skip" if args.skip_bad else "raise",
        write=False,
    )
    print(result.summary(), flush=True)  # the scores, even if the predictions cannot be written
    print(f"predictions      {result.write_predictions()}")


def add_features(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "features",
        help="export a saved model's features of a layer for a label file (.npz/.parquet)",
        description="Run a saved model up to a named layer on every image of a label file and "
        "write features, labels, paths, class names and the layer name.",
    )
    add_labelled_images(parser)
    parser.add_argument(
        "--layer",
        help="layer name (default: features_lstm, the LSTM's output; "
        "features_conv: the conv map it reads, averaged)",
    )
    parser.add_argument("--out", required=True, help="output file: .npz, or .parquet with pyarrow")
    parser.set_defaults(run=run_features)


def run_features(args: argparse.Namespace) -> None:
    read_metadata(args.model)
    load_tensorflow()
    from artgan.model.features import export_features

    out, rows, dim = export_features(
        args.model,
        args.labels,
        args.images,
        args.out,
        layer=args.layer,
        classes=args.classes,
        on_error="skip" if args.skip_bad else "raise",
    )
    print(f"wrote {rows} x {dim} features to {out}")


def add_explain(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "explain",
        help="Grad-CAM heat maps: where a saved model looks in image files",
        description="For each image, predict with a saved model and write OUT/<name>.gradcam.png: "
        "the painting beside the Grad-CAM heat map of its predicted class (keras-io's recipe on "
        "a conv-feature layer).",
    )
    parser.add_argument("model", help="a .keras file saved by artgan (runs/<task>/best/...)")
    parser.add_argument("images", nargs="+", help="image files (any format Pillow reads)")
    parser.add_argument("--out", required=True, help="folder for the heat-map PNGs")
    parser.add_argument("--layer", help="conv feature layer (default: features_conv)")
    parser.set_defaults(run=run_explain)


def run_explain(args: argparse.Namespace) -> None:
    read_metadata(args.model)
    load_tensorflow()
    from artgan.model.gradcam import explain_files

    unreadable = 0
    for path, result, name, probability in explain_files(
        args.model, args.images, args.out, layer=args.layer
    ):
        if name is None:
            print(f"{path}\n  could not read: {result}")
            unreadable += 1
        else:
            print(f"{path}\n  {probability:7.2%}  {name}  -> {result}")
    if unreadable == len(args.images):
        raise ArtganError(f"none of the {unreadable} image(s) could be read (reasons above)")
