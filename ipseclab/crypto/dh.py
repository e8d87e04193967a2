"""Diffie-Hellman groups for IKEv2 (RFC 7296 §3.4, IANA "Transform Type 4") as data.

A group is one row: its strongSwan keyword, its IANA ID and its parameters. Three kinds:

* MODP (RFC 2409, RFC 3526, RFC 5114): ``p``, ``g`` and, where the group has a prime-order
  subgroup, ``q``. The arithmetic is Python's own ``pow()``, short enough to read in a
  notebook, and able to run the deliberately tiny toy groups of the attack lab, which
  ``cryptography`` refuses (it wants p of 512 bits or more, and deprecates FFDH anyway).
* ECP (RFC 5903, RFC 5114): NIST curves through ``cryptography``. The KE data is x || y,
  without the 0x04 prefix of SEC 1; the shared secret is the x coordinate only.
* Curve25519 and Curve448 (RFC 8031) through ``cryptography``: raw 32/56-octet strings.

Every check of a peer's public value that RFC 6989 asks for happens in ``exchange`` and
raises :class:`ipseclab.errors.InvalidKeyShare` with a one-line reason.

The MODP primes of RFC 2409 and RFC 3526 are p = 2^N - 2^(N-64) - 1 + 2^64 * (floor(2^(N-130)
* pi) + k); tests/test_dh.py recomputes them from pi and checks that they are safe primes.
"""

from __future__ import annotations

import difflib
import secrets
from dataclasses import KW_ONLY, dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ipseclab.errors import InvalidKeyShare, UnknownAlgorithm

# IANA "Transform Type 4 - Key Exchange Method Transform IDs"
MODP_768 = 1
MODP_1024 = 2
MODP_1536 = 5
MODP_2048 = 14
MODP_3072 = 15
MODP_4096 = 16
MODP_6144 = 17
MODP_8192 = 18
ECP_256 = 19
ECP_384 = 20
ECP_521 = 21
MODP_1024_160 = 22
MODP_2048_224 = 23
MODP_2048_256 = 24
ECP_192 = 25
ECP_224 = 26
CURVE_25519 = 31
CURVE_448 = 32
# RFC 7296 §3.3.2: IDs 1024-65535 are for private use; the attack lab's toy groups live there.
PRIVATE_USE_MIN = 1024

MODP768_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A63A3620FFFFFFFFFFFFFFFF",
    16,
)

MODP1024_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
    16,
)

MODP1536_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF",
    16,
)

MODP2048_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)

MODP3072_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
    16,
)

MODP4096_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8"
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2"
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF",
    16,
)

MODP6144_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8"
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2"
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C93402849236C3FAB4D27C7026"
    "C1D4DCB2602646DEC9751E763DBA37BDF8FF9406AD9E530EE5DB382F413001AE"
    "B06A53ED9027D831179727B0865A8918DA3EDBEBCF9B14ED44CE6CBACED4BB1B"
    "DB7F1447E6CC254B332051512BD7AF426FB8F401378CD2BF5983CA01C64B92EC"
    "F032EA15D1721D03F482D7CE6E74FEF6D55E702F46980C82B5A84031900B1C9E"
    "59E7C97FBEC7E8F323A97A7E36CC88BE0F1D45B7FF585AC54BD407B22B4154AA"
    "CC8F6D7EBF48E1D814CC5ED20F8037E0A79715EEF29BE32806A1D58BB7C5DA76"
    "F550AA3D8A1FBFF0EB19CCB1A313D55CDA56C9EC2EF29632387FE8D76E3C0468"
    "043E8F663F4860EE12BF2D5B0B7474D6E694F91E6DCC4024FFFFFFFFFFFFFFFF",
    16,
)

MODP8192_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8"
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2"
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C93402849236C3FAB4D27C7026"
    "C1D4DCB2602646DEC9751E763DBA37BDF8FF9406AD9E530EE5DB382F413001AE"
    "B06A53ED9027D831179727B0865A8918DA3EDBEBCF9B14ED44CE6CBACED4BB1B"
    "DB7F1447E6CC254B332051512BD7AF426FB8F401378CD2BF5983CA01C64B92EC"
    "F032EA15D1721D03F482D7CE6E74FEF6D55E702F46980C82B5A84031900B1C9E"
    "59E7C97FBEC7E8F323A97A7E36CC88BE0F1D45B7FF585AC54BD407B22B4154AA"
    "CC8F6D7EBF48E1D814CC5ED20F8037E0A79715EEF29BE32806A1D58BB7C5DA76"
    "F550AA3D8A1FBFF0EB19CCB1A313D55CDA56C9EC2EF29632387FE8D76E3C0468"
    "043E8F663F4860EE12BF2D5B0B7474D6E694F91E6DBE115974A3926F12FEE5E4"
    "38777CB6A932DF8CD8BEC4D073B931BA3BC832B68D9DD300741FA7BF8AFC47ED"
    "2576F6936BA424663AAB639C5AE4F5683423B4742BF1C978238F16CBE39D652D"
    "E3FDB8BEFC848AD922222E04A4037C0713EB57A81A23F0C73473FC646CEA306B"
    "4BCBC8862F8385DDFA9D4B7FA2C087E879683303ED5BDD3A062B3CF5B3A278A6"
    "6D2A13F83F44F82DDF310EE074AB6A364597E899A0255DC164F31CC50846851D"
    "F9AB48195DED7EA1B1D510BD7EE74D73FAF36BC31ECFA268359046F4EB879F92"
    "4009438B481C6CD7889A002ED5EE382BC9190DA6FC026E479558E4475677E9AA"
    "9E3050E2765694DFC81F56E880B96E7160C980DD98EDD3DFFFFFFFFFFFFFFFFF",
    16,
)

MODP1024S160_P = int(
    "B10B8F96A080E01DDE92DE5EAE5D54EC52C99FBCFB06A3C69A6A9DCA52D23B61"
    "6073E28675A23D189838EF1E2EE652C013ECB4AEA906112324975C3CD49B83BF"
    "ACCBDD7D90C4BD7098488E9C219A73724EFFD6FAE5644738FAA31A4FF55BCCC0"
    "A151AF5F0DC8B4BD45BF37DF365C1A65E68CFDA76D4DA708DF1FB2BC2E4A4371",
    16,
)

MODP1024S160_G = int(
    "A4D1CBD5C3FD34126765A442EFB99905F8104DD258AC507FD6406CFF14266D31"
    "266FEA1E5C41564B777E690F5504F213160217B4B01B886A5E91547F9E2749F4"
    "D7FBD7D3B9A92EE1909D0D2263F80A76A6A24C087A091F531DBF0A0169B6A28A"
    "D662A4D18E73AFA32D779D5918D08BC8858F4DCEF97C2A24855E6EEB22B3B2E5",
    16,
)

MODP1024S160_Q = int(
    "F518AA8781A8DF278ABA4E7D64B7CB9D49462353",
    16,
)

MODP2048S224_P = int(
    "AD107E1E9123A9D0D660FAA79559C51FA20D64E5683B9FD1B54B1597B61D0A75"
    "E6FA141DF95A56DBAF9A3C407BA1DF15EB3D688A309C180E1DE6B85A1274A0A6"
    "6D3F8152AD6AC2129037C9EDEFDA4DF8D91E8FEF55B7394B7AD5B7D0B6C12207"
    "C9F98D11ED34DBF6C6BA0B2C8BBC27BE6A00E0A0B9C49708B3BF8A3170918836"
    "81286130BC8985DB1602E714415D9330278273C7DE31EFDC7310F7121FD5A074"
    "15987D9ADC0A486DCDF93ACC44328387315D75E198C641A480CD86A1B9E587E8"
    "BE60E69CC928B2B9C52172E413042E9B23F10B0E16E79763C9B53DCF4BA80A29"
    "E3FB73C16B8E75B97EF363E2FFA31F71CF9DE5384E71B81C0AC4DFFE0C10E64F",
    16,
)

MODP2048S224_G = int(
    "AC4032EF4F2D9AE39DF30B5C8FFDAC506CDEBE7B89998CAF74866A08CFE4FFE3"
    "A6824A4E10B9A6F0DD921F01A70C4AFAAB739D7700C29F52C57DB17C620A8652"
    "BE5E9001A8D66AD7C17669101999024AF4D027275AC1348BB8A762D0521BC98A"
    "E247150422EA1ED409939D54DA7460CDB5F6C6B250717CBEF180EB34118E98D1"
    "19529A45D6F834566E3025E316A330EFBB77A86F0C1AB15B051AE3D428C8F8AC"
    "B70A8137150B8EEB10E183EDD19963DDD9E263E4770589EF6AA21E7F5F2FF381"
    "B539CCE3409D13CD566AFBB48D6C019181E1BCFE94B30269EDFE72FE9B6AA4BD"
    "7B5A0F1C71CFFF4C19C418E1F6EC017981BC087F2A7065B384B890D3191F2BFA",
    16,
)

MODP2048S224_Q = int(
    "801C0D34C58D93FE997177101F80535A4738CEBCBF389A99B36371EB",
    16,
)

MODP2048S256_P = int(
    "87A8E61DB4B6663CFFBBD19C651959998CEEF608660DD0F25D2CEED4435E3B00"
    "E00DF8F1D61957D4FAF7DF4561B2AA3016C3D91134096FAA3BF4296D830E9A7C"
    "209E0C6497517ABD5A8A9D306BCF67ED91F9E6725B4758C022E0B1EF4275BF7B"
    "6C5BFC11D45F9088B941F54EB1E59BB8BC39A0BF12307F5C4FDB70C581B23F76"
    "B63ACAE1CAA6B7902D52526735488A0EF13C6D9A51BFA4AB3AD8347796524D8E"
    "F6A167B5A41825D967E144E5140564251CCACB83E6B486F6B3CA3F7971506026"
    "C0B857F689962856DED4010ABD0BE621C3A3960A54E710C375F26375D7014103"
    "A4B54330C198AF126116D2276E11715F693877FAD7EF09CADB094AE91E1A1597",
    16,
)

MODP2048S256_G = int(
    "3FB32C9B73134D0B2E77506660EDBD484CA7B18F21EF205407F4793A1A0BA125"
    "10DBC15077BE463FFF4FED4AAC0BB555BE3A6C1B0C6B47B1BC3773BF7E8C6F62"
    "901228F8C28CBB18A55AE31341000A650196F931C77A57F2DDF463E5E9EC144B"
    "777DE62AAAB8A8628AC376D282D6ED3864E67982428EBC831D14348F6F2F9193"
    "B5045AF2767164E1DFC967C1FB3F2E55A4BD1BFFE83B9C80D052B985D182EA0A"
    "DB2A3B7313D3FE14C8484B1E052588B9B7D2BBD2DF016199ECD06E1557CD0915"
    "B3353BBB64E0EC377FD028370DF92B52C7891428CDC67EB6184B523D1DB246C3"
    "2F63078490F00EF8D647D148D47954515E2327CFEF98C582664B4C0F6CC41659",
    16,
)

MODP2048S256_Q = int(
    "8CF83642A709A097B447997640129DA299B1A47D1EB3750BA308B0FE64F5FBD3",
    16,
)


class DhPrivate:
    """One side's ephemeral key in one exchange: made by :meth:`DhGroup.generate`."""

    __slots__ = ("group",)

    def __init__(self, group: DhGroup) -> None:
        self.group = group

    def public_bytes(self) -> bytes:
        """The Key Exchange Data of our KE payload (RFC 7296 §3.4)."""
        raise NotImplementedError

    def exchange(self, peer: bytes) -> bytes:
        """g^ir as RFC 7296 §2.14 feeds it to SKEYSEED, after the RFC 6989 checks of ``peer``."""
        raise NotImplementedError

    def _check_length(self, peer: bytes) -> None:
        if len(peer) != self.group.public_size:
            raise InvalidKeyShare(
                f"{self.group.keyword} public value must be {self.group.public_size} octets,"
                f" got {len(peer)}")


@dataclass(frozen=True)
class DhGroup:
    """A key exchange method row. ``public_size`` is the length of the KE data in octets."""

    keyword: str
    iana_id: int
    _: KW_ONLY
    legacy: bool = False
    insecure: bool = False
    rfc: str = ""

    @property
    def public_size(self) -> int:
        raise NotImplementedError

    def generate(self, private: bytes | int | None = None) -> DhPrivate:
        """A new private key, random unless ``private`` is given (for published vectors)."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.keyword


# --- MODP -------------------------------------------------------------------------------


class _ModpPrivate(DhPrivate):
    __slots__ = ("_x", "_y")

    def __init__(self, group: ModpGroup, x: int) -> None:
        super().__init__(group)
        self._x = x
        self._y = pow(group.g, x, group.p)

    def public_bytes(self) -> bytes:
        return self._y.to_bytes(self.group.public_size, "big")

    def exchange(self, peer: bytes) -> bytes:
        group: ModpGroup = self.group  # type: ignore[assignment]
        self._check_length(peer)
        y = int.from_bytes(peer, "big")
        # RFC 6989 §2.1: 1 and p-1 have order 1 and 2 and would leak or force the secret.
        if not 1 < y < group.p - 1:
            raise InvalidKeyShare(f"{group.keyword} public value is not in 2 .. p-2")
        # RFC 6989 §2.2: in a group with a small subgroup structure y must lie in the q subgroup.
        if group.q is not None and pow(y, group.q, group.p) != 1:
            raise InvalidKeyShare(f"{group.keyword} public value is not in the order-q subgroup")
        return pow(y, self._x, group.p).to_bytes(group.public_size, "big")


@dataclass(frozen=True)
class ModpGroup(DhGroup):
    """A MODP group (RFC 7296 §3.4): KE data and g^ir are left-padded to the length of p.

    ``exponent_bits`` sets the size of random private exponents: RFC 3526 §8 gives sizes
    for the security each group is thought to offer; with ``q`` known the exponent is taken
    below q; with neither it is as long as p.
    """

    p: int = field(repr=False)
    g: int = field(repr=False)
    q: int | None = field(default=None, repr=False)
    exponent_bits: int | None = None

    @property
    def public_size(self) -> int:
        return (self.p.bit_length() + 7) // 8

    def generate(self, private: bytes | int | None = None) -> DhPrivate:
        if private is None:
            if self.q is not None:
                x = 1 + secrets.randbelow(self.q - 1)
            else:
                bits = self.exponent_bits or self.p.bit_length() - 1
                x = 2 + secrets.randbelow(min(1 << bits, self.p - 3))
        else:
            x = int.from_bytes(private, "big") if isinstance(private, bytes) else private
            if not 0 < x < (self.q or self.p - 1):
                raise ValueError(f"{self.keyword} private exponent out of range")
        return _ModpPrivate(self, x)


# --- ECP --------------------------------------------------------------------------------


class _EcpPrivate(DhPrivate):
    __slots__ = ("_key",)

    def __init__(self, group: EcpGroup, key: ec.EllipticCurvePrivateKey) -> None:
        super().__init__(group)
        self._key = key

    def public_bytes(self) -> bytes:
        point = self._key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return point[1:]

    def exchange(self, peer: bytes) -> bytes:
        group: EcpGroup = self.group  # type: ignore[assignment]
        self._check_length(peer)
        # RFC 6989 §2.3: the point must be on the curve; cryptography (OpenSSL) checks that
        # and that both coordinates are below p.
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(group.curve, b"\x04" + peer)
        except ValueError:
            raise InvalidKeyShare(f"{group.keyword} public value is not a point on the curve"
                                  ) from None
        return self._key.exchange(ec.ECDH(), public)


@dataclass(frozen=True)
class EcpGroup(DhGroup):
    """An ECP group (RFC 5903 §7): KE data is x || y, g^ir is the x coordinate only."""

    curve: ec.EllipticCurve
    coordinate_size: int

    @property
    def public_size(self) -> int:
        return 2 * self.coordinate_size

    def generate(self, private: bytes | int | None = None) -> DhPrivate:
        if private is None:
            return _EcpPrivate(self, ec.generate_private_key(self.curve))
        d = int.from_bytes(private, "big") if isinstance(private, bytes) else private
        return _EcpPrivate(self, ec.derive_private_key(d, self.curve))


# --- Curve25519 and Curve448 ---------------------------------------------------------------


class _MontgomeryPrivate(DhPrivate):
    __slots__ = ("_key",)

    def __init__(self, group: MontgomeryGroup,
                 key: x25519.X25519PrivateKey | x448.X448PrivateKey) -> None:
        super().__init__(group)
        self._key = key

    def public_bytes(self) -> bytes:
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def exchange(self, peer: bytes) -> bytes:
        group: MontgomeryGroup = self.group  # type: ignore[assignment]
        self._check_length(peer)
        public_cls = x25519.X25519PublicKey if group.size == 32 else x448.X448PublicKey
        try:
            secret = self._key.exchange(public_cls.from_public_bytes(peer))  # type: ignore[arg-type]
        except ValueError:
            secret = bytes(group.size)  # OpenSSL refuses exactly the all-zero result
        # RFC 7748 §6.1 / RFC 8031 §2.4: a low-order point makes the secret all zero.
        if secret == bytes(group.size):
            raise InvalidKeyShare(
                f"{group.keyword} public value is a low-order point (shared secret all zero)")
        return secret


@dataclass(frozen=True)
class MontgomeryGroup(DhGroup):
    """Curve25519 / Curve448 (RFC 8031 §2): keys, KE data and g^ir are raw little-endian strings."""

    size: int

    @property
    def public_size(self) -> int:
        return self.size

    def generate(self, private: bytes | int | None = None) -> DhPrivate:
        private_cls = x25519.X25519PrivateKey if self.size == 32 else x448.X448PrivateKey
        if private is None:
            return _MontgomeryPrivate(self, private_cls.generate())
        if isinstance(private, int):
            private = private.to_bytes(self.size, "little")
        if len(private) != self.size:
            raise ValueError(f"{self.keyword} private key must be {self.size} octets")
        return _MontgomeryPrivate(self, private_cls.from_private_bytes(private))


# --- The registry -------------------------------------------------------------------------

_ROWS: list[DhGroup] = [
    ModpGroup("modp768", MODP_768, MODP768_P, 2, exponent_bits=160, legacy=True,
              rfc="RFC 2409"),
    ModpGroup("modp1024", MODP_1024, MODP1024_P, 2, exponent_bits=160, legacy=True,
              rfc="RFC 2409"),
    ModpGroup("modp1536", MODP_1536, MODP1536_P, 2, exponent_bits=240, legacy=True,
              rfc="RFC 3526"),
    ModpGroup("modp2048", MODP_2048, MODP2048_P, 2, exponent_bits=320, rfc="RFC 3526"),
    ModpGroup("modp3072", MODP_3072, MODP3072_P, 2, exponent_bits=420, rfc="RFC 3526"),
    ModpGroup("modp4096", MODP_4096, MODP4096_P, 2, exponent_bits=480, rfc="RFC 3526"),
    ModpGroup("modp6144", MODP_6144, MODP6144_P, 2, exponent_bits=540, rfc="RFC 3526"),
    ModpGroup("modp8192", MODP_8192, MODP8192_P, 2, exponent_bits=620, rfc="RFC 3526"),
    EcpGroup("ecp256", ECP_256, ec.SECP256R1(), 32, rfc="RFC 5903"),
    EcpGroup("ecp384", ECP_384, ec.SECP384R1(), 48, rfc="RFC 5903"),
    EcpGroup("ecp521", ECP_521, ec.SECP521R1(), 66, rfc="RFC 5903"),
    ModpGroup("modp1024s160", MODP_1024_160, MODP1024S160_P, MODP1024S160_G,
              MODP1024S160_Q, legacy=True, rfc="RFC 5114"),
    ModpGroup("modp2048s224", MODP_2048_224, MODP2048S224_P, MODP2048S224_G,
              MODP2048S224_Q, legacy=True, rfc="RFC 5114"),
    ModpGroup("modp2048s256", MODP_2048_256, MODP2048S256_P, MODP2048S256_G,
              MODP2048S256_Q, legacy=True, rfc="RFC 5114"),
    EcpGroup("ecp192", ECP_192, ec.SECP192R1(), 24, legacy=True, rfc="RFC 5114"),
    EcpGroup("ecp224", ECP_224, ec.SECP224R1(), 28, legacy=True, rfc="RFC 5114"),
    MontgomeryGroup("x25519", CURVE_25519, 32, rfc="RFC 8031"),
    MontgomeryGroup("x448", CURVE_448, 56, rfc="RFC 8031"),
]

DH_GROUPS: dict[str, DhGroup] = {g.keyword: g for g in _ROWS}
# strongSwan takes both names; x25519 is what its documentation and our configs write.
DH_ALIASES = {"curve25519": "x25519", "curve448": "x448"}


def register(group: DhGroup) -> DhGroup:
    """Add a group, e.g. an insecure toy group for the attack lab (IANA private-use ID)."""
    if group.keyword in DH_GROUPS or group.keyword in DH_ALIASES:
        raise ValueError(f"a DH group named {group.keyword} already exists")
    if dh_group_by_id(group.iana_id) is not None:
        raise ValueError(f"a DH group with ID {group.iana_id} already exists")
    DH_GROUPS[group.keyword] = group
    return group


def dh_group(keyword: str) -> DhGroup:
    """Look up a group by strongSwan keyword (``modp2048``, ``ecp256``, ``x25519``)."""
    key = keyword.lower()
    group = DH_GROUPS.get(DH_ALIASES.get(key, key))
    if group is None:
        near = difflib.get_close_matches(key, list(DH_GROUPS) + list(DH_ALIASES), n=3,
                                         cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise UnknownAlgorithm(f"unknown DH group '{keyword}'{hint}", token=keyword)
    return group


def dh_group_by_id(iana_id: int) -> DhGroup | None:
    """Look up by IANA transform ID; None when we do not implement it."""
    for group in DH_GROUPS.values():
        if group.iana_id == iana_id:
            return group
    return None
