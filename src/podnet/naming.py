"""Names the way Kubernetes controllers make them, but reproducible.

Kubernetes suffixes generated names with random characters from a safe alphabet, and names a
Deployment's ReplicaSet after an FNV-32a hash of its pod template. podnet keeps the shapes
and the alphabet, and derives the "random" part from a hash of the name's inputs, so the same
manifests always give the same names.
"""

from __future__ import annotations

try:  # SHA-256 without OpenSSL: podnet-cni imports this module, and hashlib costs a run ~1.5 ms
    from _sha256 import sha256
except ImportError:  # Python 3.12+ names it _sha2
    from hashlib import sha256

TYPE_CHECKING = False  # not typing's, which costs podnet-cni ~3 ms
if TYPE_CHECKING:
    from typing import Any

# k8s.io/apimachinery/pkg/util/rand: no vowels (no accidental words), no 0/1/3 (look-alikes).
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MAX_NAME_LENGTH = 63  # generated names are truncated like the API server's generateName


def safe_encode(text: str) -> str:
    """rand.SafeEncodeString: each byte mapped onto the safe alphabet."""
    return "".join(SAFE_ALPHABET[ord(ch) % len(SAFE_ALPHABET)] for ch in text)


def fnv32a(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def template_hash(template: dict[str, Any], collision_count: int = 0) -> str:
    """pod-template-hash: FNV-32a over the template (canonical JSON here), safe-encoded."""
    import json  # here: podnet-cni imports this module and never hashes templates

    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return safe_encode(str(fnv32a(data)))


def random_suffix(*parts: str, length: int = 5) -> str:
    """The 5 "random" characters of a generated name, derived from `parts`."""
    digest = sha256("\x00".join(parts).encode()).digest()
    return "".join(SAFE_ALPHABET[b % len(SAFE_ALPHABET)] for b in digest[:length])


def generate_name(prefix: str, *seed: str) -> str:
    """metadata.generateName + suffix, with the prefix cut so the whole fits in 63 characters."""
    suffix = random_suffix(prefix, *seed)
    return prefix[: MAX_NAME_LENGTH - len(suffix)] + suffix


IFNAMSIZ = 15  # Linux interface names: at most 15 characters


def veth_name(seed: str) -> str:
    """A node-side veth name: "veth" + 8 hex characters (12 < IFNAMSIZ), like the CNI bridge
    plugin's random names, but derived from `seed` so it is the same every time."""
    return "veth" + sha256(seed.encode()).hexdigest()[:8]


def host_veth_name(namespace: str, pod: str) -> str:
    """The node-side end of a pod's eth0, as podnet-cni names it (the simulator and the plan
    know it without asking the plugin)."""
    return veth_name(f"{namespace}/{pod}")
