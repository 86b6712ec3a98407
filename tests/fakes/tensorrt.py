"""A recording fake of the TensorRT Python API (versions 10 and 11), for driving cunet's build and run paths on CPU.

Only what cunet calls is imitated, each behaviour citing where it is documented:
  [stub]  tensorrt-stubs 10.13.0.35 (`tensorrt_bindings/tensorrt.pyi`, the typed 10.13 binding), by method;
  [py11]  TensorRT 11 "Removed Python APIs" and Builder pages (docs.nvidia.com/deeplearning/tensorrt/11.x);
  [cpp11] the TensorRT 11 C++ enum values (trtx-sys `nvinfer1::BuilderFlag` / `NetworkDefinitionCreationFlag`);
  [guide] the TensorRT developer guide (engines are specific to the GPU model and TensorRT version; the builder and
          runtime use the calling thread's current CUDA device);
  [dla11] TensorRT 11 "Working with DLA": DLA was unavailable in TensorRT 11.0 through 11.3 (restored in 11.4.1 on
          JetPack 7.2.2+); which DLA attributes those bindings still expose is not documented, so the fake's 11.0-11.3
          Builder raises on `num_DLA_cores` (a caller must not reach it).
A built "engine" is a small JSON header plus the ONNX bytes; `execute_async_v3` runs those bytes with ONNX Runtime's
CPU provider on the input found at the input tensor's device address (a `FakeCudaDriver` buffer) and writes the result
at the output's address, so a wrong pointer, shape, dtype or padding shows up as wrong numbers. `state.fail` names
calls that should report failure the documented way (-1, False, None) for refusal-path tests. Every call is appended
to `state.calls` (shared with the fake CUDA driver) in order.
"""

from __future__ import annotations

import enum
import importlib.machinery
import json
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_MAGIC = b"FAKE-TRT-ENGINE\n"


@dataclass
class State:
    driver: Any
    version: str
    fail: set[str] = field(default_factory=set)
    log: list[str] = field(default_factory=list)

    @property
    def calls(self) -> list[tuple[str, Any]]:
        return self.driver.calls

    def record(self, name: str, arg: Any = None) -> None:
        self.calls.append((name, arg))


def make_tensorrt(version: str, driver: Any) -> tuple[types.ModuleType, State]:
    """A module that stands in for `tensorrt` at `version` ("10.x" or "11.x"), and its recording state."""
    major, minor = (int(p) for p in version.split(".")[:2])
    no_dla = major == 11 and minor < 4  # [dla11]
    state = State(driver, version)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # importlib.util.find_spec needs one

    # [stub] NetworkDefinitionCreationFlag: EXPLICIT_BATCH 0, STRONGLY_TYPED 1 (10.x);
    # [py11]/[cpp11] 11.x: EXPLICIT_BATCH gone, STRONGLY_TYPED = 0, "deprecated ... always enabled ... ignored".
    if major >= 11:
        trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 0})
    else:
        trt.NetworkDefinitionCreationFlag = enum.IntEnum(
            "NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
    # [stub] BuilderFlag values (FP16 0, INT8 1, GPU_FALLBACK 3, TF32 6); [py11] FP16/INT8 removed in 11.x,
    # [cpp11] GPU_FALLBACK 3 and TF32 6 kept.
    flags = {"GPU_FALLBACK": 3, "TF32": 6}
    if major < 11:
        flags.update(FP16=0, INT8=1)
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", flags)
    trt.DataType = enum.IntEnum("DataType", {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3})  # [stub] DataType
    trt.TensorIOMode = enum.IntEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})  # [stub] TensorIOMode
    trt.DeviceType = enum.IntEnum("DeviceType", {"GPU": 0, "DLA": 1})  # [stub] DeviceType
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0})  # [stub] MemoryPoolType.WORKSPACE

    class Dims(tuple):
        """[stub] Dims "behave like Python tuples"; Dims(shape: list[int])."""

        def __new__(cls, shape: Any = ()) -> "Dims":
            return super().__new__(cls, (int(d) for d in shape))

    trt.Dims = Dims

    class Logger:
        # [stub] Logger.Severity members are also class attributes of Logger.
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self, min_severity: int = 1) -> None:
            self.min_severity = min_severity

    class HostMemory:
        """[stub] IHostMemory supports the buffer protocol; `bytes(mem)` copies it."""

        def __init__(self, data: bytes) -> None:
            self._data = data
            self.nbytes = len(data)

        def __bytes__(self) -> bytes:
            return self._data

    class Tensor:
        def __init__(self, name: str, shape: tuple[int, ...], dtype: Any) -> None:
            self.name, self.shape, self.dtype = name, shape, dtype

    class Network:
        def __init__(self, flags: int) -> None:
            # [py11] strong typing is always on in 11.x; [stub] in 10.x only with 1 << STRONGLY_TYPED.
            strong_bit = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
            self.strongly_typed = major >= 11 or bool(flags & strong_bit)
            self.inputs: list[Tensor] = []
            self.outputs: list[Tensor] = []
            self.model: bytes | None = None

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, index: int) -> Tensor:
            return self.inputs[index]

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network, self.errors = network, []
            state.record("OnnxParser")

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, index: int) -> str:
            return self.errors[index]

        def parse(self, model: bytes) -> bool:
            """[stub] OnnxParser.parse returns False on failure, errors via num_errors/get_error."""
            import onnx
            from onnx import TensorProto

            state.record("OnnxParser.parse", len(model))
            try:
                proto = onnx.load_from_string(bytes(model))
            except Exception as e:  # protobuf's DecodeError and friends
                self.errors.append(f"ModelImporter: failed to parse ONNX model ({type(e).__name__})")
                return False
            inits = {t.name: t for t in proto.graph.initializer}
            for n in proto.graph.node:
                # onnx-tensorrt (QuantizeLinear/DequantizeLinear importers) asserts int8 zero points equal to 0.
                if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2:
                    zp = inits.get(n.input[2])
                    if zp is not None and zp.data_type != TensorProto.INT8:
                        self.errors.append(f"{n.name}: TensorRT supports only INT8 Q/DQ zero points")
            if self.errors:
                return False
            real = {t.name for t in proto.graph.initializer}
            for value, into in ((proto.graph.input, self.network.inputs), (proto.graph.output, self.network.outputs)):
                for v in value:
                    if v.name in real:
                        continue
                    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim)
                    dtype = trt.DataType.HALF if v.type.tensor_type.elem_type == TensorProto.FLOAT16 else \
                        trt.DataType.FLOAT
                    into.append(Tensor(v.name, dims, dtype))
            self.network.model = bytes(model)
            return True

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

        def set_shape(self, name: str, min: Any, opt: Any, max: Any) -> None:
            """[stub] IOptimizationProfile.set_shape: equal lengths and 0 <= min <= opt <= max, else ValueError;
            static dimensions are validated only at build time."""
            state.record("IOptimizationProfile.set_shape", (name, tuple(min), tuple(opt), tuple(max)))
            lo, mid, hi = tuple(min), tuple(opt), tuple(max)
            if not len(lo) == len(mid) == len(hi) or any(not 0 <= a <= b <= c for a, b, c in zip(lo, mid, hi)):
                raise ValueError("Shape provided for min/opt/max is inconsistent")
            self.shapes[name] = (lo, mid, hi)

        def __bool__(self) -> bool:
            return bool(self.shapes)

    class TimingCache:
        """Serialised as "FAKE-CACHE|<gpu name>|<TensorRT version>" (the header a real cache verifies)."""

        def __init__(self, device: str) -> None:
            self.device = device

        def serialize(self) -> HostMemory:
            return HostMemory(f"FAKE-CACHE|{self.device}|{version}".encode())

    class Config:
        def __init__(self, builder: "Builder") -> None:
            self.builder = builder
            self.flags = {trt.BuilderFlag.TF32}  # [stub] BuilderFlag.TF32: "Enabled by default."
            self.pools: dict[Any, int] = {}
            self.profiles: list[Profile] = []
            self.cache: TimingCache | None = None
            self.default_device_type = trt.DeviceType.GPU  # [stub] IBuilderConfig.default_device_type
            self.DLA_core = -1  # [stub] IBuilderConfig.DLA_core (a TensorRT build's default is -1: no DLA)

        def set_flag(self, flag: Any) -> None:
            state.record("IBuilderConfig.set_flag", flag.name)
            self.flags.add(flag)

        def clear_flag(self, flag: Any) -> None:
            state.record("IBuilderConfig.clear_flag", flag.name)
            self.flags.discard(flag)

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            state.record("IBuilderConfig.set_memory_pool_limit", (pool.name, size))
            self.pools[pool] = size

        def add_optimization_profile(self, profile: Profile) -> int:
            """[stub] returns the profile's index, or -1 if the input is not valid (`bool(profile)` False)."""
            state.record("IBuilderConfig.add_optimization_profile")
            if not profile or "add_optimization_profile" in state.fail:
                return -1
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, blob: bytes) -> TimingCache:
            """[stub] create_timing_cache: an empty buffer makes a new cache (for the current device [guide])."""
            state.record("IBuilderConfig.create_timing_cache", len(blob))
            if not blob:
                return TimingCache(self.builder.device_name)
            _, device, _ = bytes(blob).decode().split("|")
            return TimingCache(device)

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            """[stub] "A failure will be reported if the CUDA device property in the provided cache is different from
            current environment"; returns bool."""
            state.record("IBuilderConfig.set_timing_cache", ignore_mismatch)
            if cache.device != self.builder.device_name and not ignore_mismatch:
                return False
            self.cache = cache
            return True

        def get_timing_cache(self) -> TimingCache | None:
            """[stub] "or `None` if no timing cache is set"."""
            return self.cache

    class Builder:
        def __init__(self, logger: Logger) -> None:
            self.device = state.driver.current  # [guide] the builder uses the calling thread's current device
            self.device_name = state.driver.devices[self.device].name
            state.record("Builder", self.device)

        @property
        def num_DLA_cores(self) -> int:
            # [stub] Builder.num_DLA_cores; [dla11] no DLA in 11.0-11.3: the fake raises, the worst a binding can do
            if no_dla:
                raise AttributeError("'tensorrt.Builder' object has no attribute 'num_DLA_cores'")
            return state.driver.devices[self.device].dla_cores

        def create_network(self, flags: int = 0) -> Network:
            state.record("Builder.create_network", flags)
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config(self)

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> HostMemory | None:
            """[stub] returns IHostMemory; like the binding, None (with a logged error) when the build fails."""
            state.record("Builder.build_serialized_network")
            if "build" in state.fail or not config.profiles or network.model is None:
                state.log.append("build failed")
                return None
            weak = {trt.BuilderFlag.__members__.get(n) for n in ("FP16", "INT8")} - {None}
            if network.strongly_typed and config.flags & weak:
                # TensorRT 10: precision builder flags are not allowed on strongly typed networks.
                state.log.append("precision flags on a strongly typed network")
                return None
            inp, out = network.inputs[0], network.outputs[0]
            lo, mid, hi = config.profiles[0].shapes[inp.name]
            for dims in (lo, mid, hi):  # [stub] set_shape (3): static dims must equal the network's
                if any(s != -1 and s != d for s, d in zip(inp.shape, dims)):
                    state.log.append("profile contradicts a static dimension")
                    return None
            if config.default_device_type == trt.DeviceType.DLA and not 0 <= config.DLA_core < self.num_DLA_cores:
                state.log.append("no such DLA core")
                return None
            header = {"version": version, "gpu": self.device_name, "input": inp.name, "output": out.name,
                      "in_dtype": int(inp.dtype), "out_dtype": int(out.dtype), "out_shape": list(out.shape),
                      "profile": [list(lo), list(mid), list(hi)], "flags": sorted(f.name for f in config.flags),
                      "dla_core": config.DLA_core if config.default_device_type == trt.DeviceType.DLA else None}
            return HostMemory(_MAGIC + json.dumps(header).encode() + b"\n" + network.model)

    class Context:
        def __init__(self, engine: "Engine") -> None:
            self.engine, self.shapes, self.addresses = engine, {}, {}

        def set_input_shape(self, name: str, shape: Any) -> bool:
            """[stub] returns bool: False for a shape outside the optimisation profile (C++ setInputShape)."""
            state.record("IExecutionContext.set_input_shape", (name, tuple(shape)))
            lo, _, hi = self.engine.profile
            ok = name == self.engine.input and len(shape) == len(lo) and all(
                a <= s <= b for a, s, b in zip(lo, shape, hi))
            if ok and "set_input_shape" not in state.fail:
                self.shapes[name] = tuple(int(s) for s in shape)
                return True
            return False

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            """Output dims that depend on an input shape not yet set are -1 (C++ getTensorShape)."""
            shape = list(self.engine.header["out_shape"])
            if self.engine.input in self.shapes:
                shape[0] = self.shapes[self.engine.input][0]
            return tuple(shape)

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            """[stub] returns bool: False for an unknown tensor name or a null address."""
            state.record("IExecutionContext.set_tensor_address", name)
            if name not in (self.engine.input, self.engine.output) or not ptr:
                return False
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            """[stub] returns bool; False when an input shape or a tensor address was never set, and [guide] when
            the calling thread's current device is not the one the engine was deserialised on (a context's memory
            and kernels belong to that device)."""
            state.record("IExecutionContext.execute_async_v3", stream_handle)
            e = self.engine
            if state.driver.current != e.device:
                state.log.append(f"execute on device {state.driver.current}, engine on device {e.device}")
                return False
            if "execute_async_v3" in state.fail or e.input not in self.shapes or \
                    set(self.addresses) != {e.input, e.output}:
                return False
            x = state.driver.read(self.addresses[e.input], self.shapes[e.input], e.np_dtype(e.header["in_dtype"]))
            y = e.session().run(None, {e.input: x})[0].astype(e.np_dtype(e.header["out_dtype"]))
            if "wrong_output" in state.fail:  # a kernel that computes something else: what a GPU check must catch
                y = y + np.ptp(y).astype(y.dtype)
            state.driver.write(self.addresses[e.output], y)
            return True

    class Engine:
        def __init__(self, header: dict[str, Any], model: bytes, device: int = 0) -> None:
            self.header, self.model, self.device = header, model, device
            self.input, self.output = header["input"], header["output"]
            self.profile = tuple(tuple(s) for s in header["profile"])
            self._session: Any = None

        @staticmethod
        def np_dtype(code: int) -> Any:
            return np.float16 if code == int(trt.DataType.HALF) else np.float32

        def session(self) -> Any:
            if self._session is None:
                import onnxruntime as ort

                self._session = ort.InferenceSession(self.model, providers=["CPUExecutionProvider"])
            return self._session

        @property
        def num_io_tensors(self) -> int:
            return 2

        def get_tensor_name(self, index: int) -> str:
            return (self.input, self.output)[index]

        def get_tensor_mode(self, name: str) -> Any:
            return trt.TensorIOMode.INPUT if name == self.input else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> Any:
            return trt.DataType(self.header["in_dtype" if name == self.input else "out_dtype"])

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
            """[stub] ICudaEngine.get_tensor_profile_shape → [min, opt, max]."""
            return [tuple(s) for s in self.profile]

        def create_execution_context(self) -> Context | None:
            """None when TensorRT cannot create the context (e.g. its device memory cannot be allocated)."""
            state.record("ICudaEngine.create_execution_context")
            return None if "create_execution_context" in state.fail else Context(self)

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.device = state.driver.current  # [guide] the runtime uses the calling thread's current device
            self.DLA_core = -1  # [stub] Runtime.DLA_core
            state.record("Runtime", self.device)

        def deserialize_cuda_engine(self, blob: bytes) -> Engine | None:
            """[stub] "returns the ICudaEngine, or None if it could not be deserialized"; [guide] an engine only
            loads on the TensorRT version and GPU model that built it."""
            state.record("Runtime.deserialize_cuda_engine", self.DLA_core)
            data = bytes(blob)
            if not data.startswith(_MAGIC):
                return None
            head, model = data[len(_MAGIC):].split(b"\n", 1)
            header = json.loads(head)
            if header["version"] != version or header["gpu"] != state.driver.devices[self.device].name:
                return None
            return Engine(header, model, self.device)

    for cls in (Logger, Builder, OnnxParser, Runtime):
        setattr(trt, cls.__name__, cls)
    # For tests/fakes/test_fake_matches_stubs.py: every fake class by name (not part of the imitated API).
    trt.FAKE_CLASSES = {c.__name__: c for c in (Dims, Logger, HostMemory, Tensor, Network, OnnxParser, Profile,
                                                 TimingCache, Config, Builder, Context, Engine, Runtime)}
    return trt, state
