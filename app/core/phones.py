"""Phone numbers to E.164, the one form holdguard stores and looks callers up by."""
import re

import phonenumbers
from phonenumbers import NumberParseException, ValidationResult

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "no valid country code",
    NumberParseException.NOT_A_NUMBER: "not a number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}

_LENGTH_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "wrong length",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "no area code",
}


def to_e164(raw, default_region: str = "US") -> str:
    """Normalise `raw` ("(555) 555-0102", "+1 555 555 0100", ...) to E.164 ("+15555550102").

    National numbers are read in `default_region` (ISO 3166 code such as "US", "GB").
    The check is on length and country code, not on number allocation, so fictional
    555 numbers and ranges newer than phonenumbers' metadata still pass.
    Raises ValueError with a readable reason for anything else.
    """
    text = "" if raw is None else str(raw).strip()
    if not text:
        raise ValueError("no phone number given")
    region = (default_region or "").upper()
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        reason = _PARSE_REASONS.get(exc.error_type, "unreadable")
        national = not text.startswith("+")
        if national and region not in phonenumbers.SUPPORTED_REGIONS:
            reason = f"no country code, and {region!r} is not a known region"
        raise ValueError(f"{text!r} is not a valid phone number ({reason})") from None
    length_check = phonenumbers.is_possible_number_with_reason(number)
    if length_check != ValidationResult.IS_POSSIBLE:
        reason = _LENGTH_REASONS.get(length_check, "impossible number")
        raise ValueError(f"{text!r} is not a valid phone number ({reason})")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_E164 = re.compile(r"\+[1-9]\d{6,14}")


def normalize_phone(raw: str | None, default_region: str = "US") -> str | None:
    """E.164 form of a caller id ("(555) 555-0102" -> "+15555550102"), as the CRM import stores
    numbers; None when it is no phone number ("anonymous", empty)."""
    if raw and _E164.fullmatch(raw):
        return raw  # what Twilio sends; to_e164 would return it unchanged (or no customer has it)
    try:
        return to_e164(raw, default_region)
    except ValueError:
        return None
