#!/usr/bin/env python3
"""Generate Core ML test fixtures with coremltools (PyPI; works on Linux without torch).

Writes fixtures/generated/coreml/:

    <case>.mlmodel | <case>.mlpackage   the model, built with coremltools' MIL builder
                                         (ML programs) or NeuralNetworkBuilder
    <case>.expected.json                what coremltools itself reads back from the saved
                                         file (ct.utils.load_spec): specification version,
                                         model type, the description as protobuf JSON,
                                         layer counts, ML program opsets, pipeline stages,
                                         and the weight bytes on disk
    spec_fields.json                     every field number, type and enum value of the
                                         Core ML messages, from coremltools' compiled
                                         descriptors (checks proto/coreml/Model.proto)
    bad/                                 broken files: empty, truncated, not Core ML,
                                         packages without manifest or data, ...

coremltools cannot run predictions on Linux, so there are no reference outputs: the
fixtures test describing models (anemone inspect, the model repository), not running them.

Idempotent like gen_fixtures.py: --check exits 0 when up to date; --force regenerates.
"""

import hashlib
import json
import os
import shutil
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import coremltools as ct  # noqa: E402
from coremltools.converters.mil import Builder as mb  # noqa: E402
from coremltools.converters.mil.mil import types, get_new_symbol  # noqa: E402
from coremltools.models import datatypes  # noqa: E402
from coremltools.models.neural_network import NeuralNetworkBuilder, flexible_shape_utils  # noqa: E402
from coremltools.models.pipeline import Pipeline  # noqa: E402
from google.protobuf.json_format import MessageToDict  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "fixtures" / "generated" / "coreml"
STAMP = OUT / ".stamp"
CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def set_metadata(model, author, license_, description, version, user=None):
    model.author = author
    model.license = license_
    model.short_description = description
    model.version = version
    for k, v in (user or {}).items():
        model.user_defined_metadata[k] = v


def program(fn_or_prog, **kw):
    return ct.convert(fn_or_prog, convert_to="mlprogram", **kw)


# ----------------------------------------------------------------------------- cases

@case
def nn_flexible():
    """NeuralNetwork .mlmodel: a shape-range input and an enumerated-shapes input."""
    b = NeuralNetworkBuilder(
        [("x", datatypes.Array(1, 3, 8, 8)), ("z", datatypes.Array(1, 16))],
        [("y", None), ("zr", None)],
        disable_rank5_shape_mapping=True,
    )
    b.add_activation("relu_x", "RELU", "x", "y")
    b.add_activation("sig_z", "SIGMOID", "z", "zr")
    spec = b.spec
    ct.models.utils.convert_double_to_float_multiarray_type(spec)
    flexible_shape_utils.set_multiarray_ndshape_range(
        spec, "x", lower_bounds=[1, 3, 8, 8], upper_bounds=[4, 3, 64, -1])
    flexible_shape_utils.add_multiarray_ndshape_enumeration(spec, "z", [(2, 16), (4, 16)])
    spec.description.input[0].shortDescription = "an image-like batch"
    spec.description.output[0].shortDescription = "relu of x"
    model = ct.models.MLModel(spec)
    set_metadata(model, "anemone tests", "Apache-2.0", "relu and sigmoid", "1.2.3",
                 {"anemone.case": "nn_flexible", "zz.last": "sorted last"})
    return model, "mlmodel"


@case
def nn_image_classifier():
    """NeuralNetworkClassifier .mlmodel: RGB image input with a size range; string and
    dictionary outputs."""
    b = NeuralNetworkBuilder([("image", datatypes.Array(3, 16, 16))], [("scores", None)],
                             mode="classifier")
    b.add_pooling("pool", height=16, width=16, stride_height=1, stride_width=1,
                  layer_type="AVERAGE", padding_type="VALID", input_name="image",
                  output_name="pooled", is_global=True)
    b.add_flatten("flat", mode=0, input_name="pooled", output_name="flat")
    b.add_softmax("softmax", "flat", "scores")
    b.set_class_labels(["red", "green", "blue"], predicted_feature_name="label",
                       prediction_blob="scores")
    b.set_pre_processing_parameters(image_input_names=["image"], is_bgr=False,
                                    image_scale=1 / 255.0)
    spec = b.spec
    flexible_shape_utils.update_image_size_range(
        spec, "image", flexible_shape_utils.NeuralNetworkImageSizeRange(
            height_range=(16, 128), width_range=(16, -1)))
    model = ct.models.MLModel(spec)
    set_metadata(model, "anemone tests", "MIT", "mean colour classifier", "1")
    return model, "mlmodel"


@case
def program_fp16_int32():
    """MLProgram .mlpackage (iOS 16): a float16 input and an int32 input."""
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, 8, 8), dtype=types.fp16),
                             mb.TensorSpec(shape=(4,), dtype=types.int32)],
                opset_version=ct.target.iOS16)
    def prog(x, n):
        w = mb.const(val=np.linspace(-1, 1, 3 * 8 * 8, dtype=np.float16).reshape(1, 3, 8, 8))
        y = mb.mul(x=mb.relu(x=x), y=w, name="y")
        m = mb.add(x=n, y=np.int32(1), name="m")
        return y, m
    model = program(prog, minimum_deployment_target=ct.target.iOS16,
                    compute_precision=ct.precision.FLOAT16)
    set_metadata(model, "anemone tests", "BSD-3-Clause", "fp16 and int32", "0.1",
                 {"anemone.case": "program_fp16_int32"})
    return model, "mlpackage"


@case
def program_ranges():
    """MLProgram .mlpackage: a free dimension becomes a shape range."""
    batch = get_new_symbol()

    @mb.program(input_specs=[mb.TensorSpec(shape=(batch, 4))])
    def prog(x):
        return mb.relu(x=x, name="y")
    return program(prog), "mlpackage"


@case
def program_images():
    """MLProgram .mlpackage (iOS 16): BGR and float16 grayscale image inputs."""
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, 24, 32)),
                             mb.TensorSpec(shape=(1, 1, 24, 32), dtype=types.fp16)],
                opset_version=ct.target.iOS16)
    def prog(bgr, gray):
        s = mb.reduce_mean(x=bgr, axes=[1], keep_dims=True)
        g = mb.cast(x=gray, dtype="fp32")
        return mb.add(x=s, y=g, name="mix")
    model = program(prog, minimum_deployment_target=ct.target.iOS16, inputs=[
        ct.ImageType(name="bgr", shape=(1, 3, 24, 32), color_layout=ct.colorlayout.BGR),
        ct.ImageType(name="gray", shape=(1, 1, 24, 32),
                     color_layout=ct.colorlayout.GRAYSCALE_FLOAT16),
    ])
    return model, "mlpackage"


@case
def program_stateful():
    """MLProgram .mlpackage (iOS 18): a state accumulates the input."""
    @mb.program(input_specs=[mb.StateTensorSpec((1, 4), dtype=types.fp16),
                             mb.TensorSpec((1, 4), dtype=types.fp16)],
                opset_version=ct.target.iOS18)
    def prog(acc, x):
        total = mb.add(x=mb.read_state(input=acc), y=x)
        mb.coreml_update_state(state=acc, value=total)
        return mb.identity(x=total, name="total")
    return program(prog, minimum_deployment_target=ct.target.iOS18), "mlpackage"


@case
def pipeline():
    """Pipeline .mlmodel of two NeuralNetworks."""
    def stage(name, inp, out, act):
        b = NeuralNetworkBuilder([(inp, datatypes.Array(6))], [(out, datatypes.Array(6))],
                                 disable_rank5_shape_mapping=True)
        b.add_activation(name, act, inp, out)
        ct.models.utils.convert_double_to_float_multiarray_type(b.spec)
        return b.spec
    p = Pipeline([("x", datatypes.Array(6))], [("out", datatypes.Array(6))])
    p.add_model(stage("relu", "x", "mid", "RELU"))
    p.add_model(stage("tanh", "mid", "out", "TANH"))
    ct.models.utils.convert_double_to_float_multiarray_type(p.spec)
    model = ct.models.MLModel(p.spec)
    set_metadata(model, "anemone tests", "Apache-2.0", "relu then tanh", "2")
    return model, "mlmodel"


# ----------------------------------------------------------------------------- references

def tree_size(path):
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def expected(name, path, ext):
    spec = ct.utils.load_spec(str(path))  # coremltools reads the saved file back
    kind = spec.WhichOneof("Type")
    out = {
        "file": path.name,
        "container": ext,
        "specificationVersion": spec.specificationVersion,
        "modelType": kind,
        "description": MessageToDict(spec.description, preserving_proto_field_name=True),
        "fileSize": tree_size(path),
    }
    if kind in ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor"):
        out["layers"] = len(getattr(spec, kind).layers)
    if kind == "mlProgram":
        out["mlprogramOpsets"] = {k: f.opset for k, f in spec.mlProgram.functions.items()}
    if kind in ("pipeline", "pipelineClassifier", "pipelineRegressor"):
        pipe = spec.pipeline if kind == "pipeline" else getattr(spec, kind).pipeline
        out["pipelineModels"] = [m.WhichOneof("Type") for m in pipe.models]
        out["pipelineNames"] = list(pipe.names)
    if ext == "mlpackage":
        manifest = json.loads((path / "Manifest.json").read_text())
        root = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]["path"]
        spec_file = path / "Data" / root
        out["rootModelPath"] = "Data/" + root
        out["weightBytes"] = tree_size(spec_file.parent) - spec_file.stat().st_size
    else:
        out["weightBytes"] = 0
    return out


def spec_fields():
    """Field numbers, types and enum values of the Core ML messages, from coremltools."""
    from coremltools.proto import Model_pb2, FeatureTypes_pb2, MIL_pb2, NeuralNetwork_pb2
    messages, enums = {}, {}

    def visit(m):
        if m.GetOptions().map_entry:
            return
        messages[m.full_name] = {
            f.name: {"number": f.number, "type": f.type,
                     "repeated": f.label == f.LABEL_REPEATED,
                     "message": f.message_type.full_name if f.message_type else None}
            for f in m.fields}
        for e in m.enum_types:
            enums[e.full_name] = {v.name: v.number for v in e.values}
        for n in m.nested_types:
            visit(n)
    for module in (Model_pb2, FeatureTypes_pb2, MIL_pb2, NeuralNetwork_pb2):
        for m in module.DESCRIPTOR.message_types_by_name.values():
            visit(m)
    return {"coremltools": ct.__version__, "messages": messages, "enums": enums}


def write_bad(good_mlmodel, good_package):
    bad = OUT / "bad"
    bad.mkdir()
    data = good_mlmodel.read_bytes()
    (bad / "empty.mlmodel").write_bytes(b"")
    (bad / "truncated.mlmodel").write_bytes(data[: len(data) // 2])
    # Cut right after the first field (specificationVersion): valid protobuf, no model.
    (bad / "version_only.mlmodel").write_bytes(data[:2])
    (bad / "not_coreml.mlmodel").write_bytes(b"this is not a Core ML model\n" * 4)
    (bad / "directory.mlmodel").mkdir()
    shutil.copytree(good_package, bad / "no_manifest.mlpackage")
    (bad / "no_manifest.mlpackage" / "Manifest.json").unlink()
    shutil.copytree(good_package, bad / "no_data.mlpackage")
    shutil.rmtree(bad / "no_data.mlpackage" / "Data")
    shutil.copytree(good_package, bad / "bad_root.mlpackage")
    manifest = json.loads((bad / "bad_root.mlpackage" / "Manifest.json").read_text())
    manifest["rootModelIdentifier"] = "00000000-0000-0000-0000-000000000000"
    (bad / "bad_root.mlpackage" / "Manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.copytree(good_package, bad / "corrupt_spec.mlpackage")
    spec_file = next((bad / "corrupt_spec.mlpackage" / "Data").rglob("model.mlmodel"))
    spec_file.write_bytes(b"\xff" * 64)
    (bad / "file.mlpackage").write_bytes(b"not a directory")
    (bad / "compiled.mlmodelc").mkdir()


# ----------------------------------------------------------------------------- main

def script_hash():
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(ct.__version__.encode())
    return h.hexdigest()


def up_to_date():
    return (STAMP.is_file() and STAMP.read_text().strip() == script_hash()
            and all((OUT / f"{c}.expected.json").is_file() for c in CASES)
            and (OUT / "spec_fields.json").is_file() and (OUT / "bad").is_dir())


def main():
    if "--check" in sys.argv:
        sys.exit(0 if up_to_date() else 1)
    if "--force" not in sys.argv and up_to_date():
        print("gen_coreml_fixtures: up to date")
        return
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    print(f"gen_coreml_fixtures: coremltools {ct.__version__}")
    saved = {}
    for name, fn in CASES.items():
        model, ext = fn()
        path = OUT / f"{name}.{ext}"
        model.save(str(path))
        saved[name] = path
        ref = expected(name, path, ext)
        (OUT / f"{name}.expected.json").write_text(json.dumps(ref, indent=2, sort_keys=True) + "\n")
        print(f"  {path.name}: {ref['modelType']}, spec {ref['specificationVersion']}")
    (OUT / "spec_fields.json").write_text(json.dumps(spec_fields(), indent=1, sort_keys=True) + "\n")
    write_bad(saved["nn_flexible"], saved["program_fp16_int32"])
    STAMP.write_text(script_hash() + "\n")
    print(f"gen_coreml_fixtures: wrote {len(CASES)} models to {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
