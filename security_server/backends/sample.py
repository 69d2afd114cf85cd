"""Fictional, deterministic sample data of three registers (no real person is described).

Citizen ids are 12 digits, ``079090000001`` .. ``079090000006`` (easy to type in the demo):

=============  ====================  ==========  ============  =============  ==============
id             full_name             birth_date  population    tax record     insurance
=============  ====================  ==========  ============  =============  ==============
079090000001   Nguyễn Văn An         1985-03-14  yes           yes            yes
079090000002   Trần Thị Bình         1990-07-02  yes           yes            yes
079090000003   Lê Hoàng Cường        1978-11-23  yes           yes            no
079090000004   Phạm Thị Dung         2001-01-30  yes           no             yes
079090000005   Hoàng Minh Đức        1965-05-09  yes           yes            yes
079090000006   Võ Thị Giang          1999-12-12  yes           no             no
=============  ====================  ==========  ============  =============  ==============

``UNKNOWN_CITIZEN`` (``079099999999``) is valid in form but in no register (``NotFoundError``).
Every register also holds an internal column that no service publishes (``household_id``,
``tax_office``, ``case_ref``): the sample backends return whole rows, like many legacy
registers, and the security server drops what the agreement does not allow.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Citizen:
    id: str
    full_name: str
    birth_date: str
    address: str
    gender: str


CITIZENS: tuple[Citizen, ...] = (
    Citizen(
        "079090000001",
        "Nguyễn Văn An",
        "1985-03-14",
        "12 Lý Thường Kiệt, Hoàn Kiếm, Hà Nội",
        "male",
    ),
    Citizen(
        "079090000002",
        "Trần Thị Bình",
        "1990-07-02",
        "45 Nguyễn Huệ, Quận 1, TP. Hồ Chí Minh",
        "female",
    ),
    Citizen(
        "079090000003", "Lê Hoàng Cường", "1978-11-23", "8 Trần Phú, Hải Châu, Đà Nẵng", "male"
    ),
    Citizen(
        "079090000004", "Phạm Thị Dung", "2001-01-30", "102 Lê Lợi, Ninh Kiều, Cần Thơ", "female"
    ),
    Citizen("079090000005", "Hoàng Minh Đức", "1965-05-09", "3 Hùng Vương, Thuận Hóa, Huế", "male"),
    Citizen(
        "079090000006",
        "Võ Thị Giang",
        "1999-12-12",
        "77 Quang Trung, Quy Nhơn, Bình Định",
        "female",
    ),
)
UNKNOWN_CITIZEN = "079099999999"

#: Tax register rows: id -> (annual_income VND, employer, tax_year).
INCOME: dict[str, tuple[int, str, int]] = {
    "079090000001": (240_000_000, "Công ty TNHH Sông Hồng", 2024),
    "079090000002": (310_500_000, "Ngân hàng Mẫu Mực", 2024),
    "079090000003": (96_000_000, "Hợp tác xã Đồng Xanh", 2024),
    "079090000005": (180_000_000, "Trường THPT Bình Minh", 2024),
}

#: Social insurance rows: id -> (insured_since, contribution_months, status).
INSURANCE: dict[str, tuple[str, int, str]] = {
    "079090000001": ("2008-09-01", 192, "active"),
    "079090000002": ("2013-02-15", 130, "active"),
    "079090000004": ("2023-06-01", 18, "active"),
    "079090000005": ("1987-04-01", 456, "retired"),
}


@dataclass(frozen=True)
class Kind:
    """One sample register: its table, published fields and internal column."""

    name: str
    service_code: str
    fields: tuple[str, ...]
    internal_field: str
    description: str


KINDS: dict[str, Kind] = {
    "population": Kind(
        "population",
        "person",
        ("full_name", "birth_date", "address", "gender"),
        "household_id",
        "Population register: a person's name, birth date, address and gender",
    ),
    "tax": Kind(
        "tax",
        "income",
        ("annual_income", "employer", "tax_year"),
        "tax_office",
        "Tax register: declared annual income",
    ),
    "social": Kind(
        "social",
        "insurance",
        ("insured_since", "contribution_months", "status"),
        "case_ref",
        "Social insurance register: insurance period and status",
    ),
}


def rows(kind: str) -> list[dict[str, object]]:
    """The seeded rows of register ``kind`` (``subject`` + published + internal columns)."""
    out: list[dict[str, object]] = []
    if kind == "population":
        for i, c in enumerate(CITIZENS):
            out.append(
                {
                    "subject": c.id,
                    "full_name": c.full_name,
                    "birth_date": c.birth_date,
                    "address": c.address,
                    "gender": c.gender,
                    "household_id": f"HH-{1000 + i}",
                }
            )
    elif kind == "tax":
        for i, (cid, (income, employer, year)) in enumerate(sorted(INCOME.items())):
            out.append(
                {
                    "subject": cid,
                    "annual_income": income,
                    "employer": employer,
                    "tax_year": year,
                    "tax_office": f"CCT-{10 + i}",
                }
            )
    elif kind == "social":
        for i, (cid, (since, months, status)) in enumerate(sorted(INSURANCE.items())):
            out.append(
                {
                    "subject": cid,
                    "insured_since": since,
                    "contribution_months": months,
                    "status": status,
                    "case_ref": f"BH-{500 + i}",
                }
            )
    else:
        raise KeyError(kind)
    return out
