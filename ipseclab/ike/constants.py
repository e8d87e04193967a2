"""Numbers of IKEv2 as IANA registers them ("Internet Key Exchange Version 2 (IKEv2) Parameters").

Names follow the RFCs (RFC 7296 §3, RFC 7383, RFC 7427 and the registry), without their common
prefix: ``PayloadType.SA``, ``NotifyType.COOKIE``, ``EncrId.AES_GCM_16``. Codec fields hold plain
ints where the registry may grow; :func:`enum_or_int` turns a known value into its enum so that
``repr`` shows the name, while an unknown value stays an int and still compares equal.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag
from typing import TypeVar

E = TypeVar("E", bound=IntEnum)


def enum_or_int(enum: type[E], value: int) -> E | int:
    """``enum(value)`` if the registry knows ``value``, else ``value`` itself."""
    # The enum's own value map: a dict lookup, where enum(value) costs a call and, for an
    # unknown value, an exception (a parsed message calls this for every field it names).
    return enum._value2member_map_.get(value, value)  # type: ignore[return-value]


class ExchangeType(IntEnum):
    """IKE header Exchange Type (RFC 7296 §3.1; RFC 5723, RFC 9242, RFC 9370)."""

    IKE_SA_INIT = 34
    IKE_AUTH = 35
    CREATE_CHILD_SA = 36
    INFORMATIONAL = 37
    IKE_SESSION_RESUME = 38
    IKE_INTERMEDIATE = 43
    IKE_FOLLOWUP_KE = 44


class HeaderFlag(IntFlag):
    """IKE header Flags (RFC 7296 §3.1): Initiator, Version (higher version possible), Response."""

    I = 0x08  # noqa: E741 - the RFC's name
    V = 0x10
    R = 0x20


class PayloadType(IntEnum):
    """Next Payload values (RFC 7296 §3.2; SKF from RFC 7383 §2.5)."""

    NONE = 0
    SA = 33
    KE = 34
    IDi = 35
    IDr = 36
    CERT = 37
    CERTREQ = 38
    AUTH = 39
    NONCE = 40  # Ni / Nr
    NOTIFY = 41
    DELETE = 42
    VENDOR_ID = 43
    TSi = 44
    TSr = 45
    SK = 46
    CP = 47
    EAP = 48
    GSPM = 49  # RFC 6467
    SKF = 53  # RFC 7383
    PS = 54  # RFC 8019 (puzzle solution)


class NotifyType(IntEnum):
    """Notify Message Types (RFC 7296 §3.10.1 and the IANA registry).

    Values below 16384 are errors, from 16384 on they are status notifications.
    """

    # Error types
    UNSUPPORTED_CRITICAL_PAYLOAD = 1
    INVALID_IKE_SPI = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_SYNTAX = 7
    INVALID_MESSAGE_ID = 9
    INVALID_SPI = 11
    NO_PROPOSAL_CHOSEN = 14
    INVALID_KE_PAYLOAD = 17
    AUTHENTICATION_FAILED = 24
    SINGLE_PAIR_REQUIRED = 34
    NO_ADDITIONAL_SAS = 35
    INTERNAL_ADDRESS_FAILURE = 36
    FAILED_CP_REQUIRED = 37
    TS_UNACCEPTABLE = 38
    INVALID_SELECTORS = 39
    UNACCEPTABLE_ADDRESSES = 40  # RFC 4555
    UNEXPECTED_NAT_DETECTED = 41  # RFC 4555
    USE_ASSIGNED_HoA = 42  # RFC 5026
    TEMPORARY_FAILURE = 43
    CHILD_SA_NOT_FOUND = 44
    INVALID_GROUP_ID = 45  # G-IKEv2
    AUTHORIZATION_FAILED = 46  # G-IKEv2
    STATE_NOT_FOUND = 47  # RFC 9370
    # Status types
    INITIAL_CONTACT = 16384
    SET_WINDOW_SIZE = 16385
    ADDITIONAL_TS_POSSIBLE = 16386
    IPCOMP_SUPPORTED = 16387
    NAT_DETECTION_SOURCE_IP = 16388
    NAT_DETECTION_DESTINATION_IP = 16389
    COOKIE = 16390
    USE_TRANSPORT_MODE = 16391
    HTTP_CERT_LOOKUP_SUPPORTED = 16392
    REKEY_SA = 16393
    ESP_TFC_PADDING_NOT_SUPPORTED = 16394
    NON_FIRST_FRAGMENTS_ALSO = 16395
    MOBIKE_SUPPORTED = 16396  # RFC 4555
    ADDITIONAL_IP4_ADDRESS = 16397
    ADDITIONAL_IP6_ADDRESS = 16398
    NO_ADDITIONAL_ADDRESSES = 16399
    UPDATE_SA_ADDRESSES = 16400
    COOKIE2 = 16401
    NO_NATS_ALLOWED = 16402
    AUTH_LIFETIME = 16403  # RFC 4478
    MULTIPLE_AUTH_SUPPORTED = 16404  # RFC 4739
    ANOTHER_AUTH_FOLLOWS = 16405
    REDIRECT_SUPPORTED = 16406  # RFC 5685
    REDIRECT = 16407
    REDIRECTED_FROM = 16408
    TICKET_LT_OPAQUE = 16409  # RFC 5723
    TICKET_REQUEST = 16410
    TICKET_ACK = 16411
    TICKET_NACK = 16412
    TICKET_OPAQUE = 16413
    LINK_ID = 16414  # RFC 5739
    USE_WESP_MODE = 16415  # RFC 5840
    ROHC_SUPPORTED = 16416  # RFC 5857
    EAP_ONLY_AUTHENTICATION = 16417  # RFC 5998
    CHILDLESS_IKEV2_SUPPORTED = 16418  # RFC 6023
    QUICK_CRASH_DETECTION = 16419  # RFC 6290
    IKEV2_MESSAGE_ID_SYNC_SUPPORTED = 16420  # RFC 6311
    IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED = 16421
    IKEV2_MESSAGE_ID_SYNC = 16422
    IPSEC_REPLAY_COUNTER_SYNC = 16423
    SECURE_PASSWORD_METHODS = 16424  # RFC 6467
    PSK_PERSIST = 16425  # RFC 6631
    PSK_CONFIRM = 16426
    ERX_SUPPORTED = 16427  # RFC 6867
    IFOM_CAPABILITY = 16428
    SENDER_REQUEST_ID = 16429
    IKEV2_FRAGMENTATION_SUPPORTED = 16430  # RFC 7383
    SIGNATURE_HASH_ALGORITHMS = 16431  # RFC 7427
    CLONE_IKE_SA_SUPPORTED = 16432  # RFC 7791
    CLONE_IKE_SA = 16433
    PUZZLE = 16434  # RFC 8019
    USE_PPK = 16435  # RFC 8784
    PPK_IDENTITY = 16436
    NO_PPK_AUTH = 16437
    INTERMEDIATE_EXCHANGE_SUPPORTED = 16438  # RFC 9242
    IP4_ALLOWED = 16439  # RFC 8983
    IP6_ALLOWED = 16440
    ADDITIONAL_KEY_EXCHANGE = 16441  # RFC 9370
    USE_AGGFRAG = 16442  # RFC 9347

    @property
    def is_error(self) -> bool:
        """RFC 7296 §3.10.1: types 0..16383 report errors."""
        return self < 16384


class ProtocolId(IntEnum):
    """Security Protocol Identifier (RFC 7296 §3.3.1)."""

    IKE = 1
    AH = 2
    ESP = 3


class TransformType(IntEnum):
    """Transform Type (RFC 7296 §3.3.2; RFC 9370 renames DH to KE and adds ADDKE1..7)."""

    ENCR = 1
    PRF = 2
    INTEG = 3
    DH = 4
    ESN = 5
    ADDKE1 = 6
    ADDKE2 = 7
    ADDKE3 = 8
    ADDKE4 = 9
    ADDKE5 = 10
    ADDKE6 = 11
    ADDKE7 = 12

    KE = 4  # RFC 9370's name for DH (an alias: TransformType(4) is DH)


class EncrId(IntEnum):
    """Transform Type 1, Encryption Algorithm Transform IDs."""

    DES_IV64 = 1
    DES = 2
    TRIPLE_DES = 3  # ENCR_3DES
    RC5 = 4
    IDEA = 5
    CAST = 6
    BLOWFISH = 7
    TRIPLE_IDEA = 8  # ENCR_3IDEA
    DES_IV32 = 9
    NULL = 11
    AES_CBC = 12
    AES_CTR = 13
    AES_CCM_8 = 14
    AES_CCM_12 = 15
    AES_CCM_16 = 16
    AES_GCM_8 = 18
    AES_GCM_12 = 19
    AES_GCM_16 = 20
    NULL_AUTH_AES_GMAC = 21
    CAMELLIA_CBC = 23
    CAMELLIA_CTR = 24
    CAMELLIA_CCM_8 = 25
    CAMELLIA_CCM_12 = 26
    CAMELLIA_CCM_16 = 27
    CHACHA20_POLY1305 = 28
    AES_CCM_8_IIV = 29
    AES_GCM_16_IIV = 30
    CHACHA20_POLY1305_IIV = 31


class PrfId(IntEnum):
    """Transform Type 2, Pseudorandom Function Transform IDs."""

    HMAC_MD5 = 1
    HMAC_SHA1 = 2
    HMAC_TIGER = 3
    AES128_XCBC = 4
    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7
    AES128_CMAC = 8
    HMAC_STREEBOG_512 = 9


class IntegId(IntEnum):
    """Transform Type 3, Integrity Algorithm Transform IDs."""

    NONE = 0
    HMAC_MD5_96 = 1
    HMAC_SHA1_96 = 2
    DES_MAC = 3
    KPDK_MD5 = 4
    AES_XCBC_96 = 5
    HMAC_MD5_128 = 6
    HMAC_SHA1_160 = 7
    AES_CMAC_96 = 8
    AES_128_GMAC = 9
    AES_192_GMAC = 10
    AES_256_GMAC = 11
    HMAC_SHA2_256_128 = 12
    HMAC_SHA2_384_192 = 13
    HMAC_SHA2_512_256 = 14


class DhId(IntEnum):
    """Transform Type 4, Diffie-Hellman (Key Exchange Method) Transform IDs."""

    NONE = 0
    MODP768 = 1
    MODP1024 = 2
    MODP1536 = 5
    MODP2048 = 14
    MODP3072 = 15
    MODP4096 = 16
    MODP6144 = 17
    MODP8192 = 18
    ECP256 = 19
    ECP384 = 20
    ECP521 = 21
    MODP1024_S160 = 22
    MODP2048_S224 = 23
    MODP2048_S256 = 24
    ECP192 = 25
    ECP224 = 26
    BRAINPOOL_P224R1 = 27
    BRAINPOOL_P256R1 = 28
    BRAINPOOL_P384R1 = 29
    BRAINPOOL_P512R1 = 30
    CURVE25519 = 31
    CURVE448 = 32
    GOST3410_2012_256 = 33
    GOST3410_2012_512 = 34
    ML_KEM_512 = 35
    ML_KEM_768 = 36
    ML_KEM_1024 = 37


class EsnId(IntEnum):
    """Transform Type 5, Extended Sequence Numbers Transform IDs."""

    NO_ESN = 0
    ESN = 1


class TransformAttributeType(IntEnum):
    """Transform attribute types (RFC 7296 §3.3.5): only Key Length is defined, in TV format."""

    KEY_LENGTH = 14


class IdType(IntEnum):
    """Identification payload ID Type (RFC 7296 §3.5; ID_NULL from RFC 7619)."""

    ID_IPV4_ADDR = 1
    ID_FQDN = 2
    ID_RFC822_ADDR = 3
    ID_IPV6_ADDR = 5
    ID_DER_ASN1_DN = 9
    ID_DER_ASN1_GN = 10
    ID_KEY_ID = 11
    ID_FC_NAME = 12
    ID_NULL = 13


class AuthMethod(IntEnum):
    """Authentication Method (RFC 7296 §3.8; RFC 4754, RFC 7619, RFC 7427)."""

    RSA = 1  # RSA Digital Signature (PKCS#1 v1.5 with SHA-1)
    PSK = 2  # Shared Key Message Integrity Code
    DSS = 3  # DSS Digital Signature
    ECDSA_SHA256_P256 = 9
    ECDSA_SHA384_P384 = 10
    ECDSA_SHA512_P521 = 11
    GSPAM = 12  # RFC 6467
    NULL = 13  # RFC 7619
    DIGITAL_SIGNATURE = 14  # RFC 7427


class CertEncoding(IntEnum):
    """Certificate Encoding (RFC 7296 §3.6; RAW_PUBLIC_KEY from RFC 7670)."""

    PKCS7_X509 = 1
    PGP = 2
    DNS_SIGNED_KEY = 3
    X509_SIGNATURE = 4
    KERBEROS = 6
    CRL = 7
    ARL = 8
    SPKI = 9
    X509_ATTRIBUTE = 10
    RAW_RSA_KEY = 11
    HASH_URL_X509_CERT = 12
    HASH_URL_X509_BUNDLE = 13
    OCSP_CONTENT = 14
    RAW_PUBLIC_KEY = 15


class TSType(IntEnum):
    """Traffic Selector Type (RFC 7296 §3.13.1; FC from RFC 4595, SECLABEL from RFC 9478)."""

    IPV4_ADDR_RANGE = 7
    IPV6_ADDR_RANGE = 8
    FC_ADDR_RANGE = 9
    SECLABEL = 10


class CfgType(IntEnum):
    """Configuration payload CFG Type (RFC 7296 §3.15)."""

    CFG_REQUEST = 1
    CFG_REPLY = 2
    CFG_SET = 3
    CFG_ACK = 4


class ConfigAttributeType(IntEnum):
    """Configuration Attribute types (RFC 7296 §3.15.1 and the IANA registry)."""

    INTERNAL_IP4_ADDRESS = 1
    INTERNAL_IP4_NETMASK = 2
    INTERNAL_IP4_DNS = 3
    INTERNAL_IP4_NBNS = 4
    INTERNAL_IP4_DHCP = 6
    APPLICATION_VERSION = 7
    INTERNAL_IP6_ADDRESS = 8
    INTERNAL_IP6_DNS = 10
    INTERNAL_IP6_DHCP = 12
    INTERNAL_IP4_SUBNET = 13
    SUPPORTED_ATTRIBUTES = 14
    INTERNAL_IP6_SUBNET = 15
    MIP6_HOME_PREFIX = 16  # RFC 5026
    INTERNAL_IP6_LINK = 17  # RFC 5739
    INTERNAL_IP6_PREFIX = 18
    HOME_AGENT_ADDRESS = 19  # RFC 5026
    P_CSCF_IP4_ADDRESS = 20  # RFC 7651
    P_CSCF_IP6_ADDRESS = 21
    FTT_KAT = 22  # RFC 6867
    EXTERNAL_SOURCE_IP4_NAT_INFO = 23  # 3GPP TS 24.302
    TIMEOUT_PERIOD_FOR_LIVENESS_CHECK = 24
    INTERNAL_DNS_DOMAIN = 25  # RFC 8598
    INTERNAL_DNSSEC_TA = 26


class HashAlgorithm(IntEnum):
    """Hash Algorithm Identifiers of SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4, RFC 8420)."""

    SHA1 = 1
    SHA2_256 = 2
    SHA2_384 = 3
    SHA2_512 = 4
    IDENTITY = 5  # RFC 8420 (Ed25519/Ed448)
    STREEBOG_256 = 6
    STREEBOG_512 = 7
