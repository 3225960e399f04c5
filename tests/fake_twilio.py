"""A local fake of the part of Twilio's REST API that `holdguard recordings fetch` uses.

A real HTTP server on 127.0.0.1 (werkzeug, in a thread) speaking Twilio's wire format:

    GET /2010-04-01/Accounts/{AccountSid}/Recordings.json   list page: recordings, first_page_uri,
        next_page_uri, previous_page_uri, page, page_size, start, end, uri; filters CallSid,
        DateCreated>, DateCreated<, DateCreated (as twilio-python sends them); PageSize/Page/PageToken
    GET /2010-04-01/Accounts/{AccountSid}/Recordings/{Sid}.json   one recording
    GET /2010-04-01/Accounts/{AccountSid}/Recordings/{Sid}.wav    the audio (a real file), Range-capable

Every request needs HTTP basic auth (account SID, auth token), as Twilio's API does; a wrong one gets
Twilio's 401 error body (code 20003). Dates are RFC 2822, as Twilio sends them. Downloads can be made
to fail: `fail_downloads(sid, times, mode)` answers the next `times` downloads of `sid` with a 500 error
("error"), a cut-off WAV ("truncated") or a non-audio body ("garbage").

    with FakeTwilio() as twilio:
        twilio.add_recording(wav_path, call_sid="CA...")
        client = Client(twilio.account_sid, twilio.auth_token); client.api.base_url = twilio.base_url
"""
from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, request, send_file
from werkzeug.serving import WSGIRequestHandler, make_server

API_VERSION = "2010-04-01"
DEFAULT_PAGE_SIZE = 50


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def rfc2822(moment: datetime) -> str:
    """Twilio's date format: "Tue, 15 Feb 2011 04:21:54 +0000"."""
    return format_datetime(moment.astimezone(timezone.utc)).replace("-0000", "+0000")


@dataclass
class FakeRecording:
    sid: str
    call_sid: str
    wav_path: Path
    date_created: datetime
    duration_s: int
    failures_left: int = 0
    failure_mode: str = "error"
    downloads: int = 0  # download attempts seen, failed or not


@dataclass
class FakeTwilio:
    account_sid: str = field(default_factory=lambda: new_sid("AC"))
    auth_token: str = field(default_factory=lambda: secrets.token_hex(16))
    recordings: list[FakeRecording] = field(default_factory=list)
    requests_seen: list[str] = field(default_factory=list)  # "GET /path?query" of every request

    def __post_init__(self):
        self._server = None
        self._thread = None
        self._lock = threading.Lock()
        self.app = self._build_app()

    # ---- controlling the fake -----------------------------------------------------------------

    def add_recording(self, wav_path: str | Path, call_sid: str | None = None, sid: str | None = None,
                      date_created: datetime | None = None) -> FakeRecording:
        """Offer a real audio file as a call recording; returns its record (with its sid)."""
        import soundfile

        recording = FakeRecording(
            sid=sid or new_sid("RE"), call_sid=call_sid or new_sid("CA"), wav_path=Path(wav_path),
            date_created=date_created or datetime.now(timezone.utc).replace(microsecond=0),
            duration_s=round(soundfile.info(str(wav_path)).duration))
        self.recordings.append(recording)
        return recording

    def fail_downloads(self, sid: str, times: int, mode: str = "error") -> None:
        """Make the next `times` downloads of `sid` fail: "error" (500), "truncated" or "garbage"."""
        assert mode in ("error", "truncated", "garbage"), mode
        recording = self._find(sid)
        recording.failures_left, recording.failure_mode = times, mode

    def downloads_of(self, sid: str) -> int:
        return self._find(sid).downloads

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> "FakeTwilio":
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeTwilio":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _find(self, sid: str) -> FakeRecording:
        for recording in self.recordings:
            if recording.sid == sid:
                return recording
        raise KeyError(sid)

    # ---- the HTTP side ------------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask("fake_twilio")
        base = f"/{API_VERSION}/Accounts/<account_sid>/Recordings"

        @app.before_request
        def authenticate():
            self.requests_seen.append(f"{request.method} {request.full_path.rstrip('?')}")
            auth = request.authorization
            if not auth or auth.username != self.account_sid or auth.password != self.auth_token:
                return _error(401, 20003, "Authenticate")
            if request.view_args and request.view_args.get("account_sid") != self.account_sid:
                return _error(404, 20404, f"The requested resource {request.path} was not found")
            return None

        @app.get(f"{base}.json")
        def list_recordings(account_sid):
            return jsonify(self._list_page(account_sid))

        @app.get(f"{base}/<sid>.json")
        def fetch_recording(account_sid, sid):
            try:
                return jsonify(self._resource(self._find(sid)))
            except KeyError:
                return _error(404, 20404, f"The requested resource {request.path} was not found")

        @app.get(f"{base}/<sid>.wav")
        def download_recording(account_sid, sid):
            try:
                recording = self._find(sid)
            except KeyError:
                return _error(404, 20404, f"The requested resource {request.path} was not found")
            with self._lock:
                recording.downloads += 1
                failing = recording.failures_left > 0
                if failing:
                    recording.failures_left -= 1
            if failing:
                return self._failed_download(recording)
            return send_file(recording.wav_path, mimetype="audio/x-wav", conditional=True)

        return app

    def _failed_download(self, recording: FakeRecording) -> Response:
        if recording.failure_mode == "truncated":
            data = recording.wav_path.read_bytes()
            return Response(data[:len(data) // 2], mimetype="audio/x-wav")
        if recording.failure_mode == "garbage":
            return Response("<html><body>Service Unavailable</body></html>", mimetype="text/html")
        return _error(500, 20500, "Internal Server Error")

    def _matching(self) -> list[FakeRecording]:
        """Recordings passing the list filters, newest first (Twilio's order)."""
        args = request.args
        chosen = sorted(self.recordings, key=lambda r: r.date_created, reverse=True)
        if args.get("CallSid"):
            chosen = [r for r in chosen if r.call_sid == args["CallSid"]]
        # DateCreated> / DateCreated< are inclusive of the whole given day or moment, as Twilio reads
        # them (>= and <=); twilio-python sends a datetime as 2026-11-20T00:00:00Z.
        if args.get("DateCreated>"):
            after = _parse_filter_time(args["DateCreated>"])
            chosen = [r for r in chosen if r.date_created >= after]
        if args.get("DateCreated<"):
            before = _parse_filter_time(args["DateCreated<"])
            chosen = [r for r in chosen if r.date_created <= before]
        if args.get("DateCreated"):
            day = _parse_filter_time(args["DateCreated"]).date()
            chosen = [r for r in chosen if r.date_created.date() == day]
        return chosen

    def _list_page(self, account_sid: str) -> dict:
        page_size = int(request.args.get("PageSize", DEFAULT_PAGE_SIZE))
        page = int(request.args.get("Page", 0))
        chosen = self._matching()
        items = chosen[page * page_size:(page + 1) * page_size]
        filters = {k: v for k, v in request.args.items() if k not in ("PageSize", "Page", "PageToken")}
        list_uri = f"/{API_VERSION}/Accounts/{account_sid}/Recordings.json"

        def page_uri(number: int, token: str | None = None) -> str:
            query = {**filters, "PageSize": page_size, "Page": number}
            if token:
                query["PageToken"] = token
            return f"{list_uri}?{urlencode(query)}"

        has_next = (page + 1) * page_size < len(chosen)
        return {
            "recordings": [self._resource(r) for r in items],
            "end": page * page_size + max(len(items) - 1, 0),
            "first_page_uri": page_uri(0),
            "next_page_uri": page_uri(page + 1, f"PA{items[-1].sid}") if has_next else None,
            "previous_page_uri": page_uri(page - 1) if page > 0 else None,
            "page": page,
            "page_size": page_size,
            "start": page * page_size,
            "uri": page_uri(page),
        }

    def _resource(self, recording: FakeRecording) -> dict:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{recording.sid}"
        created = rfc2822(recording.date_created)
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "call_sid": recording.call_sid,
            "conference_sid": None,
            "date_created": created,
            "date_updated": rfc2822(recording.date_created + timedelta(seconds=recording.duration_s)),
            "start_time": created,
            "duration": str(recording.duration_s),
            "sid": recording.sid,
            "price": "-0.00250",
            "price_unit": "USD",
            "status": "completed",
            "channels": 1,
            "source": "StartCallRecordingAPI",
            "error_code": None,
            "uri": f"{uri}.json",
            "encryption_details": None,
            "subresource_uris": {
                "add_on_results": f"{uri}/AddOnResults.json",
                "transcriptions": f"{uri}/Transcriptions.json",
            },
            "media_url": f"{self.base_url}{uri}",
        }


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # tests read requests_seen, not a request log on stderr
        pass


def _parse_filter_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = parsedate_to_datetime(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _error(status: int, code: int, message: str) -> Response:
    """Twilio's error body."""
    response = jsonify({"code": code, "message": message,
                        "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status})
    response.status_code = status
    return response
