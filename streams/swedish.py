"""Swedish reference code lists: regions (län), municipalities, bank clearing numbers.

- ``REGIONS``: the 21 county codes (länskod) with the county name. 20 of them have a
  region as the regional body (``REGION_BODIES``); in Gotlands län (09) the municipality
  Region Gotland (0980) carries the region's tasks.
- ``MUNICIPALITIES``: all 290 municipality codes (kommunkod, 4 digits: county code +
  2 digits) with the municipality name, as in Statistics Sweden's code list.
- ``CLEARING_RANGES``: clearing number ranges of banks operating in Sweden, with the
  account number layout from Bankgirot's "Bankernas kontonummer" (type 1: clearing +
  7-digit account, mod-11 check over clearing and account; type 2: the account number
  alone carries the check digit).
- ``make_bank_account``: realistic ``CCCC-NNNNNNN`` account strings with correct check
  digits for the bank's layout (the format of ``PaymentEvent.bank_account``).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from .identity import luhn_digit

# -- regions (län) ---------------------------------------------------------------------
REGIONS: dict[str, str] = {
    "01": "Stockholms län",
    "03": "Uppsala län",
    "04": "Södermanlands län",
    "05": "Östergötlands län",
    "06": "Jönköpings län",
    "07": "Kronobergs län",
    "08": "Kalmar län",
    "09": "Gotlands län",
    "10": "Blekinge län",
    "12": "Skåne län",
    "13": "Hallands län",
    "14": "Västra Götalands län",
    "17": "Värmlands län",
    "18": "Örebro län",
    "19": "Västmanlands län",
    "20": "Dalarnas län",
    "21": "Gävleborgs län",
    "22": "Västernorrlands län",
    "23": "Jämtlands län",
    "24": "Västerbottens län",
    "25": "Norrbottens län",
}

#: The body with regional tasks (health care, patient travel) in each county. Gotland has
#: no region: the municipality Region Gotland (0980) carries those tasks.
REGION_BODIES: dict[str, str] = {
    "01": "Region Stockholm",
    "03": "Region Uppsala",
    "04": "Region Sörmland",
    "05": "Region Östergötland",
    "06": "Region Jönköpings län",
    "07": "Region Kronoberg",
    "08": "Region Kalmar län",
    "09": "Region Gotland",
    "10": "Region Blekinge",
    "12": "Region Skåne",
    "13": "Region Halland",
    "14": "Västra Götalandsregionen",
    "17": "Region Värmland",
    "18": "Region Örebro län",
    "19": "Region Västmanland",
    "20": "Region Dalarna",
    "21": "Region Gävleborg",
    "22": "Region Västernorrland",
    "23": "Region Jämtland Härjedalen",
    "24": "Region Västerbotten",
    "25": "Region Norrbotten",
}

#: County whose regional tasks are carried by a municipality, not a region.
MUNICIPALITY_AS_REGION = {"09": "0980"}

# -- municipalities (kommuner) ---------------------------------------------------------
MUNICIPALITIES: dict[str, str] = {
    # 01 Stockholms län
    "0114": "Upplands Väsby", "0115": "Vallentuna", "0117": "Österåker", "0120": "Värmdö",
    "0123": "Järfälla", "0125": "Ekerö", "0126": "Huddinge", "0127": "Botkyrka", "0128": "Salem",
    "0136": "Haninge", "0138": "Tyresö", "0139": "Upplands-Bro", "0140": "Nykvarn", "0160": "Täby",
    "0162": "Danderyd", "0163": "Sollentuna", "0180": "Stockholm", "0181": "Södertälje",
    "0182": "Nacka", "0183": "Sundbyberg", "0184": "Solna", "0186": "Lidingö", "0187": "Vaxholm",
    "0188": "Norrtälje", "0191": "Sigtuna", "0192": "Nynäshamn",
    # 03 Uppsala län
    "0305": "Håbo", "0319": "Älvkarleby", "0330": "Knivsta", "0331": "Heby", "0360": "Tierp",
    "0380": "Uppsala", "0381": "Enköping", "0382": "Östhammar",
    # 04 Södermanlands län
    "0428": "Vingåker", "0461": "Gnesta", "0480": "Nyköping", "0481": "Oxelösund", "0482": "Flen",
    "0483": "Katrineholm", "0484": "Eskilstuna", "0486": "Strängnäs", "0488": "Trosa",
    # 05 Östergötlands län
    "0509": "Ödeshög", "0512": "Ydre", "0513": "Kinda", "0560": "Boxholm", "0561": "Åtvidaberg",
    "0562": "Finspång", "0563": "Valdemarsvik", "0580": "Linköping", "0581": "Norrköping",
    "0582": "Söderköping", "0583": "Motala", "0584": "Vadstena", "0586": "Mjölby",
    # 06 Jönköpings län
    "0604": "Aneby", "0617": "Gnosjö", "0642": "Mullsjö", "0643": "Habo", "0662": "Gislaved",
    "0665": "Vaggeryd", "0680": "Jönköping", "0682": "Nässjö", "0683": "Värnamo", "0684": "Sävsjö",
    "0685": "Vetlanda", "0686": "Eksjö", "0687": "Tranås",
    # 07 Kronobergs län
    "0760": "Uppvidinge", "0761": "Lessebo", "0763": "Tingsryd", "0764": "Alvesta", "0765": "Älmhult",
    "0767": "Markaryd", "0780": "Växjö", "0781": "Ljungby",
    # 08 Kalmar län
    "0821": "Högsby", "0834": "Torsås", "0840": "Mörbylånga", "0860": "Hultsfred", "0861": "Mönsterås",
    "0862": "Emmaboda", "0880": "Kalmar", "0881": "Nybro", "0882": "Oskarshamn", "0883": "Västervik",
    "0884": "Vimmerby", "0885": "Borgholm",
    # 09 Gotlands län
    "0980": "Gotland",
    # 10 Blekinge län
    "1060": "Olofström", "1080": "Karlskrona", "1081": "Ronneby", "1082": "Karlshamn", "1083": "Sölvesborg",
    # 12 Skåne län
    "1214": "Svalöv", "1230": "Staffanstorp", "1231": "Burlöv", "1233": "Vellinge", "1256": "Östra Göinge",
    "1257": "Örkelljunga", "1260": "Bjuv", "1261": "Kävlinge", "1262": "Lomma", "1263": "Svedala",
    "1264": "Skurup", "1265": "Sjöbo", "1266": "Hörby", "1267": "Höör", "1270": "Tomelilla",
    "1272": "Bromölla", "1273": "Osby", "1275": "Perstorp", "1276": "Klippan", "1277": "Åstorp",
    "1278": "Båstad", "1280": "Malmö", "1281": "Lund", "1282": "Landskrona", "1283": "Helsingborg",
    "1284": "Höganäs", "1285": "Eslöv", "1286": "Ystad", "1287": "Trelleborg", "1290": "Kristianstad",
    "1291": "Simrishamn", "1292": "Ängelholm", "1293": "Hässleholm",
    # 13 Hallands län
    "1315": "Hylte", "1380": "Halmstad", "1381": "Laholm", "1382": "Falkenberg", "1383": "Varberg",
    "1384": "Kungsbacka",
    # 14 Västra Götalands län
    "1401": "Härryda", "1402": "Partille", "1407": "Öckerö", "1415": "Stenungsund", "1419": "Tjörn",
    "1421": "Orust", "1427": "Sotenäs", "1430": "Munkedal", "1435": "Tanum", "1438": "Dals-Ed",
    "1439": "Färgelanda", "1440": "Ale", "1441": "Lerum", "1442": "Vårgårda", "1443": "Bollebygd",
    "1444": "Grästorp", "1445": "Essunga", "1446": "Karlsborg", "1447": "Gullspång", "1452": "Tranemo",
    "1460": "Bengtsfors", "1461": "Mellerud", "1462": "Lilla Edet", "1463": "Mark", "1465": "Svenljunga",
    "1466": "Herrljunga", "1470": "Vara", "1471": "Götene", "1472": "Tibro", "1473": "Töreboda",
    "1480": "Göteborg", "1481": "Mölndal", "1482": "Kungälv", "1484": "Lysekil", "1485": "Uddevalla",
    "1486": "Strömstad", "1487": "Vänersborg", "1488": "Trollhättan", "1489": "Alingsås", "1490": "Borås",
    "1491": "Ulricehamn", "1492": "Åmål", "1493": "Mariestad", "1494": "Lidköping", "1495": "Skara",
    "1496": "Skövde", "1497": "Hjo", "1498": "Tidaholm", "1499": "Falköping",
    # 17 Värmlands län
    "1715": "Kil", "1730": "Eda", "1737": "Torsby", "1760": "Storfors", "1761": "Hammarö",
    "1762": "Munkfors", "1763": "Forshaga", "1764": "Grums", "1765": "Årjäng", "1766": "Sunne",
    "1780": "Karlstad", "1781": "Kristinehamn", "1782": "Filipstad", "1783": "Hagfors", "1784": "Arvika",
    "1785": "Säffle",
    # 18 Örebro län
    "1814": "Lekeberg", "1860": "Laxå", "1861": "Hallsberg", "1862": "Degerfors", "1863": "Hällefors",
    "1864": "Ljusnarsberg", "1880": "Örebro", "1881": "Kumla", "1882": "Askersund", "1883": "Karlskoga",
    "1884": "Nora", "1885": "Lindesberg",
    # 19 Västmanlands län
    "1904": "Skinnskatteberg", "1907": "Surahammar", "1960": "Kungsör", "1961": "Hallstahammar",
    "1962": "Norberg", "1980": "Västerås", "1981": "Sala", "1982": "Fagersta", "1983": "Köping",
    "1984": "Arboga",
    # 20 Dalarnas län
    "2021": "Vansbro", "2023": "Malung-Sälen", "2026": "Gagnef", "2029": "Leksand", "2031": "Rättvik",
    "2034": "Orsa", "2039": "Älvdalen", "2061": "Smedjebacken", "2062": "Mora", "2080": "Falun",
    "2081": "Borlänge", "2082": "Säter", "2083": "Hedemora", "2084": "Avesta", "2085": "Ludvika",
    # 21 Gävleborgs län
    "2101": "Ockelbo", "2104": "Hofors", "2121": "Ovanåker", "2132": "Nordanstig", "2161": "Ljusdal",
    "2180": "Gävle", "2181": "Sandviken", "2182": "Söderhamn", "2183": "Bollnäs", "2184": "Hudiksvall",
    # 22 Västernorrlands län
    "2260": "Ånge", "2262": "Timrå", "2280": "Härnösand", "2281": "Sundsvall", "2282": "Kramfors",
    "2283": "Sollefteå", "2284": "Örnsköldsvik",
    # 23 Jämtlands län
    "2303": "Ragunda", "2305": "Bräcke", "2309": "Krokom", "2313": "Strömsund", "2321": "Åre",
    "2326": "Berg", "2361": "Härjedalen", "2380": "Östersund",
    # 24 Västerbottens län
    "2401": "Nordmaling", "2403": "Bjurholm", "2404": "Vindeln", "2409": "Robertsfors", "2417": "Norsjö",
    "2418": "Malå", "2421": "Storuman", "2422": "Sorsele", "2425": "Dorotea", "2460": "Vännäs",
    "2462": "Vilhelmina", "2463": "Åsele", "2480": "Umeå", "2481": "Lycksele", "2482": "Skellefteå",
    # 25 Norrbottens län
    "2505": "Arvidsjaur", "2506": "Arjeplog", "2510": "Jokkmokk", "2513": "Överkalix", "2514": "Kalix",
    "2518": "Övertorneå", "2521": "Pajala", "2523": "Gällivare", "2560": "Älvsbyn", "2580": "Luleå",
    "2581": "Piteå", "2582": "Boden", "2583": "Haparanda", "2584": "Kiruna",
}

#: The ten most populous municipalities (demo data puts more people there).
LARGEST_MUNICIPALITIES = ("0180", "1480", "1280", "0380", "0580", "1980", "1880", "0581", "1283", "0680")


def is_region_code(code: str) -> bool:
    return code in REGIONS


def is_municipality_code(code: str) -> bool:
    return code in MUNICIPALITIES


def region_of(municipality_code: str) -> str:
    """The county (län) code of a municipality code; KeyError for an unknown code."""
    if municipality_code not in MUNICIPALITIES:
        raise KeyError(municipality_code)
    return municipality_code[:2]


def municipality_name(code: str) -> str:
    return MUNICIPALITIES[code]


def municipality_body_name(code: str) -> str:
    """How the municipality names itself as a payer, e.g. 'Stockholms kommun'."""
    if code == "0980":
        return "Region Gotland"
    name = MUNICIPALITIES[code]
    # Swedish genitive: no extra s after a vowel or after s/x/z ("Uppsala kommun", "Borås kommun").
    return f"{name} kommun" if name[-1].lower() in "aeiouyåäösxz" else f"{name}s kommun"


# -- banks and clearing numbers --------------------------------------------------------
@dataclass(frozen=True)
class ClearingRange:
    first: int
    last: int
    bank: str
    account_type: int  # 1: clearing is part of the check; 2: the account number alone
    comment: int  # Bankgirot's "kommentar" for the check-digit method

    def __contains__(self, clearing: int) -> bool:
        return self.first <= clearing <= self.last

    @property
    def account_digits(self) -> int:
        if self.account_type == 1:
            return 7
        return 9 if self.comment == 2 else 10


CLEARING_RANGES: tuple[ClearingRange, ...] = (
    ClearingRange(1100, 1199, "Nordea", 1, 1),
    ClearingRange(1200, 1399, "Danske Bank", 1, 1),
    ClearingRange(1400, 2099, "Nordea", 1, 1),
    ClearingRange(2300, 2399, "Ålandsbanken", 1, 2),
    ClearingRange(2400, 2499, "Danske Bank", 1, 1),
    ClearingRange(3000, 3299, "Nordea", 1, 1),
    ClearingRange(3300, 3300, "Nordea (personkonto)", 2, 1),
    ClearingRange(3301, 3399, "Nordea", 1, 1),
    ClearingRange(3400, 3409, "Länsförsäkringar Bank", 1, 1),
    ClearingRange(3410, 3781, "Nordea", 1, 1),
    ClearingRange(3782, 3782, "Nordea (personkonto)", 2, 1),
    ClearingRange(3783, 3999, "Nordea", 1, 1),
    ClearingRange(4000, 4999, "Nordea", 1, 2),
    ClearingRange(5000, 5999, "SEB", 1, 1),
    ClearingRange(6000, 6999, "Handelsbanken", 2, 2),
    ClearingRange(7000, 7999, "Swedbank", 1, 1),
    ClearingRange(8000, 8999, "Swedbank", 2, 3),
    ClearingRange(9020, 9029, "Länsförsäkringar Bank", 1, 2),
    ClearingRange(9040, 9049, "Citibank", 1, 2),
    ClearingRange(9060, 9069, "Länsförsäkringar Bank", 1, 1),
    ClearingRange(9100, 9109, "Nordnet Bank", 1, 2),
    ClearingRange(9120, 9124, "SEB", 1, 1),
    ClearingRange(9130, 9149, "SEB", 1, 1),
    ClearingRange(9150, 9169, "Skandiabanken", 1, 2),
    ClearingRange(9170, 9179, "Ikano Bank", 1, 1),
    ClearingRange(9180, 9189, "Danske Bank", 2, 1),
    ClearingRange(9190, 9199, "DNB Bank", 1, 2),
    ClearingRange(9230, 9239, "Marginalen Bank", 1, 1),
    ClearingRange(9250, 9259, "SBAB", 1, 1),
    ClearingRange(9260, 9269, "DNB Bank", 1, 2),
    ClearingRange(9270, 9279, "ICA Banken", 1, 1),
    ClearingRange(9280, 9289, "Resurs Bank", 1, 1),
    ClearingRange(9300, 9349, "Swedbank", 2, 1),
    ClearingRange(9390, 9399, "Landshypotek", 1, 2),
    ClearingRange(9460, 9469, "Santander Consumer Bank", 1, 1),
    ClearingRange(9470, 9479, "BNP Paribas", 1, 2),
    ClearingRange(9550, 9569, "Avanza Bank", 1, 2),
    ClearingRange(9570, 9579, "Sparbanken Syd", 2, 1),
    ClearingRange(9630, 9639, "Lån & Spar Bank Sverige", 1, 1),
    ClearingRange(9640, 9649, "Nordax Bank", 1, 2),
    ClearingRange(9660, 9669, "Svea Bank", 1, 2),
    ClearingRange(9670, 9679, "JAK Medlemsbank", 1, 2),
    ClearingRange(9680, 9689, "BlueStep Finans", 1, 1),
    ClearingRange(9700, 9709, "Ekobanken", 1, 2),
    ClearingRange(9780, 9789, "Klarna Bank", 1, 2),
)

#: Rough share of private accounts per range, for demo data (the big four dominate).
_BANK_WEIGHTS = {
    (8000, 8999): 22, (7000, 7999): 6, (6000, 6999): 20, (5000, 5999): 16, (3300, 3300): 10,
    (3000, 3299): 4, (1100, 1199): 2, (1200, 1399): 4, (3400, 3409): 4, (9020, 9029): 2,
    (9270, 9279): 3, (9150, 9169): 3, (9550, 9569): 2, (9100, 9109): 1, (9570, 9579): 1,
}


def bank_of(clearing: str | int) -> ClearingRange | None:
    """The clearing range (bank) a clearing number belongs to, or None if no known bank."""
    try:
        number = int(str(clearing)[:4])
    except ValueError:
        return None
    for rng in CLEARING_RANGES:
        if number in rng:
            return rng
    return None


def bank_name(account: str) -> str | None:
    """Bank name for an account string ``CCCC-NNN...``; None when the clearing is unknown."""
    found = bank_of(account.split("-", 1)[0])
    return found.bank if found else None


def _mod11_ok(digits: str) -> bool:
    """Weights 1,2,...,10,1,2... from the right; the weighted sum is divisible by 11."""
    return sum(int(d) * (i % 10 + 1) for i, d in enumerate(reversed(digits))) % 11 == 0


def _mod10_ok(digits: str) -> bool:
    return luhn_digit(digits[:-1]) == int(digits[-1])


def account_check_ok(account: str) -> bool:
    """True when the account's check digit is right for its bank's layout (Bankgirot).

    The register is the authority on which accounts exist; this check is a plausibility aid
    (demo data honours it, loaders do not require it)."""
    clearing, _, number = account.partition("-")
    found = bank_of(clearing)
    if found is None or not number.isdigit() or len(clearing) not in (4, 5):
        return False
    clearing4 = clearing[:4]
    if found.account_type == 1:
        number = number.zfill(7)
        if len(number) != 7:
            return False
        return _mod11_ok((clearing4[1:] if found.comment == 1 else clearing4) + number)
    if found.comment == 2:  # Handelsbanken: 9 digits, mod 11
        return len(number) <= 9 and _mod11_ok(number.zfill(9))
    return len(number) <= 10 and _mod10_ok(number.zfill(10))


def make_bank_account(rng: random.Random, bank: str | None = None, owner_id: str | None = None) -> str:
    """A realistic account ``CCCC-NNNNNNN`` at a real bank, with a correct check digit.

    ``bank`` picks a bank by name (default: weighted by market share). A Nordea personkonto
    (clearing 3300) is the owner's personal identity number (10 digits) when ``owner_id``
    is a 12-digit personal number, as Nordea does it.
    """
    if bank is None:
        ranges = [r for r in CLEARING_RANGES if (r.first, r.last) in _BANK_WEIGHTS]
        chosen = rng.choices(ranges, weights=[_BANK_WEIGHTS[(r.first, r.last)] for r in ranges])[0]
    else:
        candidates = [r for r in CLEARING_RANGES if r.bank == bank]
        if not candidates:
            raise ValueError(f"unknown bank {bank!r}; use one of {sorted({r.bank for r in CLEARING_RANGES})}")
        chosen = rng.choice(candidates)
    if chosen.first in (3300, 3782):  # a personkonto is the owner's personal identity number
        if owner_id and len(owner_id) == 12 and owner_id.isdigit():
            return f"{chosen.first}-{owner_id[2:]}"
        chosen = next(r for r in CLEARING_RANGES if r.first == 3000)  # no person: an ordinary Nordea account
    clearing = str(rng.randint(chosen.first, chosen.last))
    while True:
        if chosen.account_type == 1 or chosen.comment == 2:
            body = "".join(str(rng.randint(0, 9)) for _ in range(chosen.account_digits - 1))
            prefix = (clearing[1:] if chosen.comment == 1 else clearing) if chosen.account_type == 1 else ""
            for last in "0123456789":
                if _mod11_ok(prefix + body + last):
                    account = f"{clearing}-{body}{last}"
                    break
            else:  # the check digit would be 10: draw again
                continue
        else:
            body = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(8))
            account = f"{clearing}-{body}{luhn_digit(body)}"
        return account
