"""Labels of the public pages, in Persian (the default) and English."""

from __future__ import annotations

from core.timefmt import persian_digits

LABELS: dict[str, dict[str, str]] = {
    "title": {"fa": "وضعیت خدمات الکترونیکی", "en": "E-service status"},
    "skip": {"fa": "رفتن به محتوا", "en": "Skip to content"},
    "report_fault": {"fa": "گزارش خرابی", "en": "Report a fault"},
    "footer": {"fa": "دیدبان — پایش دسترس‌پذیری و سطح خدمت", "en": "Didban — availability and service levels"},
    "agencies": {"fa": "دستگاه‌ها", "en": "Agencies"},
    "services_count": {"fa": "%d خدمت", "en": "%d services"},
    "state_up": {"fa": "برقرار", "en": "Up"},
    "state_down": {"fa": "قطع", "en": "Down"},
    "state_unknown": {"fa": "نامعلوم", "en": "Unknown"},
    "state_no_data": {"fa": "بدون داده", "en": "No data"},
    "since": {"fa": "از", "en": "since"},
    "month_availability": {"fa": "دسترس‌پذیری این ماه", "en": "Availability this month"},
    "target": {"fa": "هدف", "en": "target"},
    "met": {"fa": "محقق", "en": "met"},
    "missed": {"fa": "محقق نشده", "en": "missed"},
    "badge_state": {"fa": "وضعیت", "en": "status"},
    "badge_month": {"fa": "دسترس‌پذیری ماه", "en": "this month"},
    "overall_up": {"fa": "همهٔ خدمات در دسترس‌اند.", "en": "All services are up."},
    "overall_down": {"fa": "برخی خدمات قطع‌اند.", "en": "Some services are down."},
    "overall_unknown": {"fa": "وضعیت برخی خدمات هنوز معلوم نیست.", "en": "Some services have no data yet."},
    "insufficient_evidence": {"fa": "شواهد ناکافی", "en": "insufficient evidence"},
    "no_agreement": {"fa": "بدون توافقنامهٔ معتبر", "en": "no agreement in force"},
    "coverage": {"fa": "پوشش پایش", "en": "coverage"},
    "seconds": {"fa": "ثانیه", "en": "s"},
    "days_90": {"fa": "۹۰ روز اخیر", "en": "Last 90 days"},
    "days_ago_90": {"fa": "۹۰ روز پیش", "en": "90 days ago"},
    "today": {"fa": "امروز", "en": "today"},
    "downtime": {"fa": "قطعی", "en": "downtime"},
    "minutes": {"fa": "دقیقه", "en": "min"},
    "no_data": {"fa": "بدون داده", "en": "no data"},
    "upcoming_maintenance": {"fa": "نگهداری برنامه‌ریزی‌شده", "en": "Planned maintenance"},
    "from": {"fa": "از", "en": "From"},
    "to": {"fa": "تا", "en": "To"},
    "announced": {"fa": "اعلام", "en": "Announced"},
    "hours_ahead": {"fa": "ساعت پیش از شروع", "en": "hours ahead"},
    "in_time": {"fa": "به‌موقع", "en": "in time"},
    "late": {"fa": "دیرهنگام: جزو قطعی", "en": "late: counts as downtime"},
    "incidents": {"fa": "رخدادها", "en": "Incidents"},
    "code": {"fa": "کد پیگیری", "en": "Tracking code"},
    "duration": {"fa": "مدت", "en": "Duration"},
    "ongoing": {"fa": "ادامه دارد", "en": "ongoing"},
    "no_incidents": {"fa": "در ۹۰ روز اخیر رخدادی ثبت نشده است.", "en": "No incidents in the last 90 days."},
    "past_months": {"fa": "ماه‌های گذشته", "en": "Past months"},
    "month": {"fa": "ماه", "en": "Month"},
    "availability": {"fa": "دسترس‌پذیری", "en": "Availability"},
    "subscribe": {"fa": "عضویت در اطلاع‌رسانی", "en": "Subscribe to notices"},
    "by": {"fa": "از طریق", "en": "By"},
    "email": {"fa": "ایمیل", "en": "Email"},
    "sms": {"fa": "پیامک", "en": "SMS"},
    "address": {"fa": "نشانی ایمیل یا شمارهٔ همراه", "en": "Email address or mobile number"},
    "confirmation_code": {"fa": "کد تأیید", "en": "Confirmation code"},
    "confirm": {"fa": "تأیید", "en": "Confirm"},
    "back": {"fa": "بازگشت", "en": "Back"},
    "subscribed_check": {"fa": "کد تأیید برای شما ارسال شد. آن را وارد کنید.",
                         "en": "A confirmation code was sent to you. Enter it below."},
    "subscription_confirmed": {"fa": "عضویت شما تأیید شد.", "en": "Your subscription is confirmed."},
    "wrong_code": {"fa": "کد نادرست است.", "en": "That code is not right."},
    "code_expired": {"fa": "این کد منقضی شده است (۱۵ دقیقه). دوباره عضو شوید تا کد تازه‌ای بگیرید.",
                     "en": "This code has expired (15 minutes). Subscribe again for a new one."},
    "code_locked": {"fa": "این کد پس از پنج تلاش نادرست قفل شد. دوباره عضو شوید.",
                    "en": "This code is locked after five wrong tries. Subscribe again."},
    "codes_limit": {"fa": "برای این نشانی در این ساعت به اندازهٔ کافی کد فرستاده شده است. بعداً دوباره تلاش کنید.",
                    "en": "This address was sent enough codes this hour. Please try again later."},
    "no_subscriptions": {"fa": "اطلاع‌رسانی با ایمیل یا پیامک در این سامانه فعال نیست.",
                         "en": "Notices by email or SMS are not offered here."},
    "no_channel": {"fa": "اطلاع‌رسانی از این راه فعال نیست.", "en": "Notices cannot be sent this way here."},
    "cross_site": {"fa": "این فرم باید از صفحهٔ خود این سامانه فرستاده شود.",
                   "en": "This form must be sent from this site's own page."},
    "unsubscribed": {"fa": "عضویت شما لغو شد.", "en": "You are unsubscribed."},
    "unknown_link": {"fa": "این پیوند معتبر نیست.", "en": "This link is not valid."},
    "receipt_intro": {"fa": "خرابی یا کاهش کیفیت خدمت را گزارش کنید؛ یک کد پیگیری دریافت می‌کنید.",
                      "en": "Report a fault or a drop in quality; you will receive a tracking code."},
    "service": {"fa": "خدمت", "en": "Service"},
    "what_went_wrong": {"fa": "چه مشکلی پیش آمد؟", "en": "What went wrong?"},
    "contact_optional": {"fa": "راه ارتباطی (اختیاری)", "en": "Contact (optional)"},
    "challenge": {"fa": "پرسش امنیتی", "en": "Security question"},
    "send": {"fa": "ارسال", "en": "Send"},
    "wrong_answer": {"fa": "پاسخ پرسش امنیتی درست نیست.", "en": "The answer to the security question is wrong."},
    "too_many": {"fa": "درخواست‌های زیادی از نشانی شما رسیده است؛ کمی بعد دوباره تلاش کنید.",
                 "en": "Too many requests from your address; please try again later."},
    "receipt": {"fa": "رسید خرابی", "en": "Fault receipt"},
    "receipt_created": {"fa": "گزارش شما ثبت شد.", "en": "Your report was filed."},
    "tracking_code": {"fa": "کد پیگیری", "en": "Tracking code"},
    "filed": {"fa": "زمان ثبت", "en": "Filed"},
    "receipt_state": {"fa": "وضعیت", "en": "State"},
    "receipt_open": {"fa": "ثبت شده", "en": "Filed"},
    "receipt_acknowledged": {"fa": "در حال بررسی", "en": "Acknowledged"},
    "receipt_resolved": {"fa": "رفع شده", "en": "Resolved"},
    "probe_check": {"fa": "بررسی خودکار", "en": "Automatic check"},
    "probe_pending": {"fa": "در انتظار", "en": "pending"},
    "probe_confirmed": {"fa": "پایش، خرابی را تأیید کرد", "en": "the probes confirmed the fault"},
    "probe_not_confirmed": {"fa": "پایش در این لحظه خرابی ندید", "en": "the probes saw no fault at that moment"},
    "staff_note": {"fa": "یادداشت کارشناس", "en": "Staff note"},
    "permalink": {"fa": "پیوند این رسید", "en": "Link to this receipt"},
    "not_found": {"fa": "پیدا نشد.", "en": "Not found."},
}


def label(key: str, lang: str) -> str:
    entry = LABELS.get(key)
    return entry.get(lang, entry["en"]) if entry else key


def numbers(value: object, lang: str) -> str:
    text = str(value)
    return persian_digits(text) if lang == "fa" else text


def elapsed(ms: int, lang: str) -> str:
    """A duration for people: seconds under a minute, then whole minutes (never "0 min" for a live outage)."""
    seconds = max(0, ms // 1000)
    if seconds < 60:
        return numbers(f"{seconds} {label('seconds', lang)}", lang)
    return numbers(f"{seconds // 60} {label('minutes', lang)}", lang)
