"""udasa_ray.http against a real local HTTP server (a thread on loopback; urllib is not mocked)."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from udasa_ray.http import EndpointRejected, EndpointUnavailable, EndpointUnreachable, JSONClient, retry_after_s

KEY = "sk-test-0123456789abcdef"


class _Handler(BaseHTTPRequestHandler):
    """Answers each POST with the next (status, headers, body) of the server's script; the last
    one repeats. ("sleep", s) instead waits s seconds before answering 200."""

    def do_POST(self):  # noqa: N802 - http.server's naming
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.seen.append({"t": time.monotonic(), "auth": self.headers.get("Authorization"), "body": body})
            step = srv.script[min(len(srv.seen), len(srv.script)) - 1]
        if step[0] == "sleep":
            time.sleep(step[1])
            step = (200, {}, {"ok": True})
        status, headers, reply = step
        data = (reply if isinstance(reply, str) else json.dumps(reply)).encode()
        try:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """serve(*steps) -> (url, the requests it received)."""
    servers = []

    def serve(*script):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        srv.daemon_threads = True
        srv.script, srv.seen, srv.lock = list(script), [], threading.Lock()
        threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_port}/v1/things", srv.seen

    yield serve
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _client(url, **kw):
    return JSONClient(url, **{"retries": 2, "backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 5, **kw})


def test_503_then_200_is_retried(server):
    url, seen = server((503, {}, {"error": "overloaded"}), (200, {}, {"result": 42}))
    assert _client(url).post({"q": 1}) == {"result": 42}
    assert len(seen) == 2 and seen[0]["body"] == seen[1]["body"] == {"q": 1}


def test_persistent_5xx_gives_up_after_all_attempts(server):
    url, seen = server((502, {}, "bad gateway"))
    with pytest.raises(EndpointUnavailable, match=r"HTTP 502 after 3 attempts") as e:
        _client(url, what="judge").post({})
    assert len(seen) == 3 and e.value.status == 502 and e.value.attempts == 3 and str(e.value).startswith("judge ")
    assert not isinstance(e.value, EndpointUnreachable)


def test_400_stops_at_once_with_status_endpoint_and_body(server):
    url, seen = server((400, {}, {"error": {"message": "model 'nope' does not exist"}}), (200, {}, {}))
    with pytest.raises(EndpointRejected) as e:
        _client(url).post({"model": "nope"})
    msg = str(e.value)
    assert len(seen) == 1 and e.value.status == 400
    assert "HTTP 400" in msg and url in msg and "model 'nope' does not exist" in msg


def test_429_waits_as_long_as_retry_after_says(server):
    url, seen = server((429, {"Retry-After": "1"}, {"error": "slow down"}), (200, {}, {"ok": 1}))
    assert _client(url).post({}) == {"ok": 1}  # backoff alone would wait ~0.01 s
    assert len(seen) == 2 and seen[1]["t"] - seen[0]["t"] >= 0.95


def test_retry_after_is_capped(server):
    url, seen = server((503, {"Retry-After": "3600"}, "{}"), (200, {}, {"ok": 1}))
    t0 = time.monotonic()
    assert _client(url, max_retry_after_s=0.2).post({}) == {"ok": 1}
    assert len(seen) == 2 and 0.15 <= time.monotonic() - t0 < 3


def test_retry_after_header_forms():
    assert retry_after_s("2") == 2.0 and retry_after_s(" 0 ") == 0.0 and retry_after_s("-5") == 0.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= retry_after_s(later) <= 31


def test_key_is_sent_but_never_shown(server, monkeypatch):
    monkeypatch.setenv("UDASA_TEST_KEY", KEY)
    # The server echoes the key in its error body: it is masked in the message all the same.
    url, seen = server((200, {}, {"ok": 1}), (401, {}, {"error": f"invalid key {KEY}"}))
    client = _client(url, api_key_env="UDASA_TEST_KEY")
    assert client.post({}) == {"ok": 1}
    with pytest.raises(EndpointRejected) as e:
        client.post({})
    assert [r["auth"] for r in seen] == [f"Bearer {KEY}"] * 2
    assert "HTTP 401" in str(e.value) and "invalid key ***" in str(e.value)
    for text in (str(e.value), repr(e.value), repr(client), str(vars(client)), str(e.value.__dict__)):
        assert KEY not in text and "sk-test" not in text
    assert "UDASA_TEST_KEY" in repr(client)  # the variable's name is fine to show


def test_no_key_no_authorization_header(server, monkeypatch):
    monkeypatch.delenv("UDASA_TEST_KEY", raising=False)
    url, seen = server((200, {}, {"ok": 1}))
    assert _client(url, api_key_env="UDASA_TEST_KEY").post({}) == {"ok": 1} and seen[0]["auth"] is None


def test_timeout_is_retried_then_raises(server, monkeypatch):
    monkeypatch.setenv("UDASA_TEST_KEY", KEY)
    url, seen = server(("sleep", 1.0))
    t0 = time.monotonic()
    with pytest.raises(EndpointUnavailable, match="timed out after 2 attempts") as e:
        _client(url, retries=1, timeout_s=0.2, api_key_env="UDASA_TEST_KEY").post({})
    assert len(seen) == 2 and e.value.status is None and time.monotonic() - t0 < 1.5
    assert not isinstance(e.value, EndpointUnreachable) and KEY not in str(e.value)


def test_timeout_then_success(server):
    url, seen = server(("sleep", 1.0), (200, {}, {"ok": 2}))
    assert _client(url, timeout_s=0.2).post({}) == {"ok": 2} and len(seen) == 2


def test_unreachable_is_retried_then_raises():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EndpointUnreachable, match=r"unreachable \(.*\) after 3 attempts") as e:
        _client(f"http://127.0.0.1:{port}/v1").post({})
    assert e.value.status is None and e.value.attempts == 3


def test_invalid_json_is_an_error_not_retried(server):
    url, seen = server((200, {}, "<html>not json</html>"))
    with pytest.raises(Exception, match="invalid JSON: <html>not json</html>"):
        _client(url).post({})
    assert len(seen) == 1


def test_backoff_grows_with_jitter_up_to_a_cap():
    c = JSONClient("http://x", backoff_s=0.5, max_backoff_s=3.0, jitter=0.25)
    for attempt, base in enumerate([0.5, 1.0, 2.0, 3.0, 3.0]):
        waits = [c.backoff(attempt) for _ in range(200)]
        assert base <= min(waits) and max(waits) <= 1.25 * base and len(set(waits)) > 1


# --- the LLM judge over the client ---------------------------------------------------------------

def _chat(content):
    return {"choices": [{"message": {"role": "assistant", "content": content}}]}


def _judge(url, **kw):
    from udasa_ray.config import JudgeConfig
    from udasa_ray.evaluate.judge import LLMJudge

    judge = LLMJudge(JudgeConfig(backend="llm", base_url=url.removesuffix("/things"), model="m", **kw))
    judge.client.backoff_s = 0.01  # no config knob: the client's default is 0.5 s
    return judge


def test_judge_retries_transient_errors_and_malformed_replies(server):
    url, seen = server((503, {}, "busy"), (200, {}, _chat("I think it is fine")), (200, {}, _chat("Rating: [[8]]")))
    j = _judge(url, retries=2).rate("helpfulness", "q", "a")
    assert (j.value, j.error, j.attempts) == (8.0, None, 2)  # the 503 is the client's; the bad reply the judge's
    assert len(seen) == 3 and seen[0]["body"]["temperature"] == 0.0 and seen[2]["body"]["temperature"] == 0.7


def test_judge_5xx_after_all_retries_is_a_failed_judgement(server):
    url, seen = server((500, {}, "boom"))
    j = _judge(url, retries=1).rate("helpfulness", "q", "a")
    assert j.value is None and j.error == "HTTP 500 after 2 attempts" and len(seen) == 2


def test_judge_4xx_is_unavailable_at_once(server, monkeypatch):
    from udasa_ray.evaluate.judge import JudgeUnavailable

    monkeypatch.setenv("JUDGE_KEY", KEY)
    url, seen = server((401, {}, {"error": "bad key"}))
    with pytest.raises(JudgeUnavailable, match=r"^judge http://.*/chat/completions answered HTTP 401: .*bad key") as e:
        _judge(url, api_key_env="JUDGE_KEY").rate("helpfulness", "q", "a")
    assert len(seen) == 1 and seen[0]["auth"] == f"Bearer {KEY}" and KEY not in str(e.value)
