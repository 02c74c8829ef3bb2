"""Syntax checks for names, labels, ports and addresses, as k8s.io/apimachinery/pkg/util/validation.

Every `is_*` function returns the list of problems with its argument, worded exactly as the
API server words them (empty list: valid), so callers can prefix a field path and print them
as `kubectl apply` would. `parse_ip` and `parse_cidr` are the lenient parsers those checks
use (netutils.ParseIPSloppy / ParseCIDRSloppy): IPv4 octets may have leading zeros, a CIDR
may have host bits set.
"""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DNS1123_LABEL_MAX_LENGTH = 63
DNS1123_SUBDOMAIN_MAX_LENGTH = 253
DNS1035_LABEL_MAX_LENGTH = 63
QUALIFIED_NAME_MAX_LENGTH = 63
LABEL_VALUE_MAX_LENGTH = 63
PORT_NAME_MAX_LENGTH = 15


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def regex_error(message: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{message} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{example}', " for example in examples)
    return f"{message} (e.g. {shown}regex used for validation is '{fmt}')"


def inclusive_range_error(low: int, high: int) -> str:
    return f"must be between {low} and {high}, inclusive"


EMPTY_ERROR = "must be non-empty"

# Regexes are applied with fullmatch: Go's `^...$` never accepts a trailing newline, Python's `$` would.
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_LABEL_ERROR = regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc")
_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL_FMT)

_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + r"(\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_ERROR = regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com")
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)

_DNS1123_LABEL_UNDERSCORE_FMT = "_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_UNDERSCORE_FMT = (
    _DNS1123_LABEL_UNDERSCORE_FMT + r"(\." + _DNS1123_LABEL_UNDERSCORE_FMT + ")*"
)
_DNS1123_SUBDOMAIN_UNDERSCORE_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_UNDERSCORE_ERROR = regex_error(
    _DNS1123_SUBDOMAIN_UNDERSCORE_MSG, _DNS1123_SUBDOMAIN_UNDERSCORE_FMT, "example.com"
)
_DNS1123_SUBDOMAIN_UNDERSCORE_RE = re.compile(_DNS1123_SUBDOMAIN_UNDERSCORE_FMT)

_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
    "start with an alphabetic character, and end with an alphanumeric character"
)
_DNS1035_LABEL_ERROR = regex_error(_DNS1035_LABEL_MSG, _DNS1035_LABEL_FMT, "my-name", "abc-123")
_DNS1035_LABEL_RE = re.compile(_DNS1035_LABEL_FMT)

_WILDCARD_DNS1123_SUBDOMAIN_FMT = r"\*\." + _DNS1123_SUBDOMAIN_FMT
_WILDCARD_DNS1123_SUBDOMAIN_MSG = (
    "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, "
    "which must consist of lower case alphanumeric characters, '-' or '.' and end with an "
    "alphanumeric character"
)
_WILDCARD_DNS1123_SUBDOMAIN_ERROR = regex_error(
    _WILDCARD_DNS1123_SUBDOMAIN_MSG, _WILDCARD_DNS1123_SUBDOMAIN_FMT, "*.example.com"
)
_WILDCARD_DNS1123_SUBDOMAIN_RE = re.compile(_WILDCARD_DNS1123_SUBDOMAIN_FMT)

_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_QUALIFIED_NAME_ERROR = regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
_QUALIFIED_NAME_RE = re.compile(_QUALIFIED_NAME_FMT)

_LABEL_VALUE_FMT = "(" + _QUALIFIED_NAME_FMT + ")?"
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_ERROR = regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345")
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)

_PORT_NAME_CHARSET_RE = re.compile("[-a-z0-9]+")
_PORT_NAME_ONE_LETTER_RE = re.compile("[a-z]")

_CONFIG_MAP_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_MAP_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
_CONFIG_MAP_KEY_ERROR = regex_error(_CONFIG_MAP_KEY_MSG, _CONFIG_MAP_KEY_FMT, "key.name", "KEY_NAME", "key-name")
_CONFIG_MAP_KEY_RE = re.compile(_CONFIG_MAP_KEY_FMT)

_HTTP_PATH_FMT = "[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+"
_HTTP_PATH_RE = re.compile(_HTTP_PATH_FMT)

IP_ERROR = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
CIDR_ERROR = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


def is_dns1123_label(value: str) -> list[str]:
    """A DNS label (RFC 1123): Namespace names, container names, hostnames."""
    if len(value) <= DNS1123_LABEL_MAX_LENGTH and _DNS1123_LABEL_RE.fullmatch(value):
        return []
    errors = []
    if len(value) > DNS1123_LABEL_MAX_LENGTH:
        errors.append(max_len_error(DNS1123_LABEL_MAX_LENGTH))
    if not _DNS1123_LABEL_RE.fullmatch(value):
        if _DNS1123_SUBDOMAIN_RE.fullmatch(value):
            errors.append("must not contain dots")
        else:
            errors.append(_DNS1123_LABEL_ERROR)
    return errors


def is_dns1123_subdomain(value: str) -> list[str]:
    """A DNS subdomain (RFC 1123): the name of most objects."""
    errors = []
    if len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errors.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errors.append(_DNS1123_SUBDOMAIN_ERROR)
    return errors


def is_dns1123_subdomain_with_underscore(value: str) -> list[str]:
    """A DNS subdomain whose labels may also hold '_' (pod dnsConfig search domains)."""
    errors = []
    if len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errors.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _DNS1123_SUBDOMAIN_UNDERSCORE_RE.fullmatch(value):
        errors.append(_DNS1123_SUBDOMAIN_UNDERSCORE_ERROR)
    return errors


def is_dns1035_label(value: str) -> list[str]:
    """A DNS label (RFC 1035), which must start with a letter: Service names."""
    errors = []
    if len(value) > DNS1035_LABEL_MAX_LENGTH:
        errors.append(max_len_error(DNS1035_LABEL_MAX_LENGTH))
    if not _DNS1035_LABEL_RE.fullmatch(value):
        errors.append(_DNS1035_LABEL_ERROR)
    return errors


def is_wildcard_dns1123_subdomain(value: str) -> list[str]:
    """`*.` followed by a DNS subdomain (Ingress hosts); the wildcard is only ever the whole first label."""
    errors = []
    if len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errors.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _WILDCARD_DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errors.append(_WILDCARD_DNS1123_SUBDOMAIN_ERROR)
    return errors


def is_qualified_name(value: str) -> list[str]:
    """A label or annotation key: an optional DNS-subdomain prefix and '/', then a name of at most 63."""
    if len(value) <= QUALIFIED_NAME_MAX_LENGTH and _QUALIFIED_NAME_RE.fullmatch(value):
        return []  # the common case: no prefix, valid
    errors = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part " + EMPTY_ERROR)
        else:
            errors.extend("prefix part " + msg for msg in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name "
            + _QUALIFIED_NAME_ERROR
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errors.append("name part " + EMPTY_ERROR)
    elif len(name) > QUALIFIED_NAME_MAX_LENGTH:
        errors.append("name part " + max_len_error(QUALIFIED_NAME_MAX_LENGTH))
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        errors.append("name part " + _QUALIFIED_NAME_ERROR)
    return errors


def is_valid_label_value(value: str) -> list[str]:
    errors = []
    if len(value) > LABEL_VALUE_MAX_LENGTH:
        errors.append(max_len_error(LABEL_VALUE_MAX_LENGTH))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errors.append(_LABEL_VALUE_ERROR)
    return errors


def is_iana_svc_name(value: str) -> list[str]:
    """An IANA_SVC_NAME (RFC 6335), which is what a named port must be (IsValidPortName)."""
    errors = []
    if len(value) > PORT_NAME_MAX_LENGTH:
        errors.append(max_len_error(PORT_NAME_MAX_LENGTH))
    if not _PORT_NAME_CHARSET_RE.fullmatch(value):
        errors.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _PORT_NAME_ONE_LETTER_RE.search(value):
        errors.append("must contain at least one letter (a-z)")
    if "--" in value:
        errors.append("must not contain consecutive hyphens")
    if value and (value[0] == "-" or value[-1] == "-"):
        errors.append("must not begin or end with a hyphen")
    return errors


def is_valid_port_num(port: int) -> list[str]:
    """A port number of a socket, 1-65535 (0 is never valid: it means "unset")."""
    return is_in_range(port, 1, 65535)


def is_in_range(value: int, low: int, high: int) -> list[str]:
    if low <= value <= high:
        return []
    return [inclusive_range_error(low, high)]


def is_config_map_key(value: str) -> list[str]:
    """A key of ConfigMap/Secret data: becomes a file name, so '.', '..' and '..x' are out."""
    errors = []
    if len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errors.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _CONFIG_MAP_KEY_RE.fullmatch(value):
        errors.append(_CONFIG_MAP_KEY_ERROR)
    if value == ".":
        errors.append("must not be '.'")
    elif value == "..":
        errors.append("must not be '..'")
    elif value.startswith(".."):
        errors.append("must not start with '..'")
    return errors


def is_http_path(value: str) -> list[str]:
    """The path part of a domain-prefixed path ("k8s.io/ingress-nginx"): RFC 3986 path characters."""
    if _HTTP_PATH_RE.fullmatch(value):
        return []
    return [regex_error("Invalid path", _HTTP_PATH_FMT)]


def is_valid_path_segment_name(value: str) -> list[str]:
    """IsValidPathSegmentName: the name becomes one segment of a REST path (RBAC names, which
    may hold ':' as in "system:basic-user", are checked with this alone)."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{bad}'" for bad in ("/", "%") if bad in value]


# ---------------------------------------------------------------- IP addresses and CIDRs

_IPV4_DOTTED_RE = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)")
_DECIMAL_RE = re.compile("[0-9]+")


def parse_ip(value: str) -> IPAddress | None:
    """Parse like netutils.ParseIPSloppy: Python's parser, plus IPv4 octets with leading zeros ("010.1.1.1").

    IPv6 zones ("fe80::1%eth0") are refused, as Go's net.ParseIP refuses them.
    """
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        match = _IPV4_DOTTED_RE.fullmatch(value)
        if match is None:
            return None
        octets = [int(part) for part in match.groups()]
        if any(octet > 255 for octet in octets):
            return None
        return ipaddress.IPv4Address(bytes(octets))
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return None
    return address


def parse_cidr(value: str) -> IPNetwork | None:
    """Parse like netutils.ParseCIDRSloppy: "10.1.2.3/8" is accepted and means 10.0.0.0/8."""
    address_text, slash, prefix_text = value.partition("/")
    if not slash or not _DECIMAL_RE.fullmatch(prefix_text):
        return None
    address = parse_ip(address_text)
    if address is None:
        return None
    prefix = int(prefix_text)
    if prefix > address.max_prefixlen:
        return None
    return ipaddress.ip_network((address, prefix), strict=False)


def ipv4_view(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address as the IPv4 address it carries (Go's net.IP.To4 does the same)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_valid_ip(value: str) -> list[str]:
    return [] if parse_ip(value) is not None else [IP_ERROR]


def is_valid_ipv4_address(value: str) -> list[str]:
    address = parse_ip(value)
    if address is None or not isinstance(ipv4_view(address), ipaddress.IPv4Address):
        return ["must be a valid IPv4 address"]
    return []


def is_valid_ipv6_address(value: str) -> list[str]:
    address = parse_ip(value)
    if address is None or not isinstance(ipv4_view(address), ipaddress.IPv6Address):
        return ["must be a valid IPv6 address"]
    return []


def is_valid_cidr(value: str) -> list[str]:
    return [] if parse_cidr(value) is not None else [CIDR_ERROR]


def special_ip_errors(address: IPAddress, text: str) -> list[str]:
    """Why an address may not be an endpoint or external IP (ValidateEndpointIP): unspecified,
    loopback or link-local addresses make no sense as a destination elsewhere in the cluster."""
    address = ipv4_view(address)
    errors = []
    if address.is_unspecified:
        errors.append(f"may not be unspecified ({text})")
    if address.is_loopback:
        errors.append("may not be in the loopback range (127.0.0.0/8, ::1/128)")
    if address.is_link_local:
        errors.append("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
    if _is_link_local_multicast(address):
        errors.append("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
    return errors


def _is_link_local_multicast(address: IPAddress) -> bool:
    packed = address.packed
    if isinstance(address, ipaddress.IPv4Address):
        return packed[:3] == b"\xe0\x00\x00"
    return packed[0] == 0xFF and packed[1] & 0x0F == 0x02
