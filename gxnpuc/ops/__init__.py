"""All NPU ops. Importing this package fills the registries; add one import line per op file."""
from gxnpuc.ops.base import ONNX_LOWERINGS, REGISTRY, TF_LOWERINGS, TFLITE_LOWERINGS, OpDef  # noqa: F401

from gxnpuc.ops import activation  # noqa: F401,E402
from gxnpuc.ops import conv  # noqa: F401,E402
from gxnpuc.ops import conv_transpose  # noqa: F401,E402
from gxnpuc.ops import fc  # noqa: F401,E402
from gxnpuc.ops import norm  # noqa: F401,E402
from gxnpuc.ops import pool  # noqa: F401,E402
from gxnpuc.ops import pad  # noqa: F401,E402
from gxnpuc.ops import shape_ops  # noqa: F401,E402
from gxnpuc.ops import elementwise  # noqa: F401,E402
from gxnpuc.ops import softmax  # noqa: F401,E402
from gxnpuc.ops import reduce  # noqa: F401,E402
from gxnpuc.ops import fold  # noqa: F401,E402
from gxnpuc.ops import tf_misc  # noqa: F401,E402
from gxnpuc.ops import tf_shape  # noqa: F401,E402
from gxnpuc.ops import runtime_norm  # noqa: F401,E402
from gxnpuc.ops import resize  # noqa: F401,E402
from gxnpuc.ops import recurrent  # noqa: F401,E402
from gxnpuc.ops import recurrent_tf  # noqa: F401,E402
from gxnpuc.ops import control  # noqa: F401,E402
from gxnpuc.ops import rejected  # noqa: F401,E402
from gxnpuc.ops import tflite_misc  # noqa: F401,E402
from gxnpuc.ops import tflite_logic  # noqa: F401,E402
from gxnpuc.ops import recurrent_tflite  # noqa: F401,E402
