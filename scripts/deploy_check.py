#!/usr/bin/env python3
"""The deploy check: the release `bootstrap` binaries, started the way Lambda starts them.

Each function's binary runs as its own process against a local Lambda Runtime API
(`cargo lambda watch --only-lambda-apis`), with the environment `template.yaml` gives it (Globals
merged with the function's own variables, parameters at their defaults, resources replaced by
their local stand-ins, listed in LOCAL below), and is invoked with fixtures from `events/`:

  migrate    the CloudFormation custom resource's Create (events/cfn/create.json): migrates an
             empty database as the administrator, makes the functions' login, PUTs SUCCESS to
             the ResponseURL
  api        GET /health and POST /documents (events/api/*.json, API Gateway HTTP API payload v2)
  integrate  an SQS delivery from the replication queue (events/sqs/ops.json) and the sweep
             (events/schedule/sweep.json)
  realtime   a WebSocket $connect (events/ws/connect.json) with an RS256 token from a local
             issuer whose keys the function fetches (JWKS), and one with a forged token

Between each process and the Runtime API sits a forwarding proxy that notes when the process
first asks for an event: that minus the process's start is its init time (what Lambda bills as
Init Duration). Then the first invocation and the median of WARM further ones are timed from
the invoking side. Results are checked (each answer's status and content), timings reported
(no timed assertions), and written to .dev/deploy-check.json.

Usage (scripts/deploy-check.sh sets this up): deploy_check.py BIN_DIR ARCH [RUNNER...]
Environment: DATABASE_URL (an administrator), AWS_ENDPOINT_URL (moto), AWS_REGION.
"""

import base64
import http.client
import http.server
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import boto3
import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ROOT = Path(__file__).resolve().parent.parent
WARM = 20
FUNCTIONS = {  # template resource -> binary
    "MigrateFunction": "migrate",
    "ApiFunction": "api",
    "IntegrateFunction": "integrate",
    "RealtimeFunction": "realtime",
}


def log(msg):
    print(f"[deploy-check] {msg}", file=sys.stderr, flush=True)


def fail(msg):
    log(f"FAILED: {msg}")
    raise SystemExit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the template -------------------------------------------------------------------------------

class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags, each read as its long form."""


def _tag(name):
    def construct(loader, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if name == "GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {"Ref" if name == "Ref" else f"Fn::{name}": value}
    return construct


for _name in ["Ref", "GetAtt", "Sub", "Join", "If", "Select", "Split", "Equals", "Not", "And",
              "Or", "FindInMap", "ImportValue", "Base64", "Condition", "GetAZs", "Cidr"]:
    CfnLoader.add_constructor(f"!{_name}", _tag(_name))


class Template:
    def __init__(self, path, local):
        self.doc = yaml.load(path.read_text(), Loader=CfnLoader)
        self.local = local  # what a Ref or GetAtt of a resource, or a parameter, stands for here

    def value(self, v):
        if isinstance(v, (str, int, float)):
            return str(v)
        (fn, arg), = v.items()
        if fn == "Ref":
            return self.ref(arg)
        if fn == "Fn::GetAtt":
            key = ".".join(arg)
            if key not in self.local:
                fail(f"no local stand-in for !GetAtt {key}")
            return self.local[key]
        if fn == "Fn::Sub":
            text = arg if isinstance(arg, str) else arg[0]
            out, i = "", 0
            while (j := text.find("${", i)) >= 0:
                k = text.index("}", j)
                name = text[j + 2:k]
                out += text[i:j] + (self.value({"Fn::GetAtt": name.split(".", 1)})
                                    if "." in name and not name.startswith("AWS::")
                                    else self.ref(name))
                i = k + 1
            return out + text[i:]
        if fn == "Fn::Join":
            sep, items = arg
            return sep.join(self.value(x) for x in (items if isinstance(items, list) else [items]))
        if fn == "Fn::If":
            cond, yes, no = arg
            return self.value(yes if self.condition(cond) else no)
        fail(f"the deploy check cannot evaluate {fn} in an environment variable")

    def condition(self, name):
        if f"Condition:{name}" in self.local:
            return self.local[f"Condition:{name}"]
        fail(f"no local value for condition {name}")

    def ref(self, name):
        if name in self.local:
            return self.local[name]
        param = self.doc.get("Parameters", {}).get(name)
        if param is not None and "Default" in param:
            d = param["Default"]
            return ",".join(d) if isinstance(d, list) else str(d)
        fail(f"no local stand-in and no default for !Ref {name}")

    def environment(self, resource):
        glob = self.doc["Globals"]["Function"]
        props = self.doc["Resources"][resource]["Properties"]
        merged = dict(glob.get("Environment", {}).get("Variables", {}))
        merged.update(props.get("Environment", {}).get("Variables", {}))
        env = {k: self.value(v) for k, v in merged.items()}
        logging = {**glob.get("LoggingConfig", {}), **props.get("LoggingConfig", {})}
        # What Lambda itself sets for a function of this configuration.
        env.update({
            "AWS_LAMBDA_FUNCTION_NAME": FUNCTIONS[resource],
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(props.get("MemorySize", glob.get("MemorySize", 128))),
            "AWS_LAMBDA_LOG_FORMAT": logging.get("LogFormat", "Text"),
            "AWS_LAMBDA_LOG_LEVEL": logging.get("ApplicationLogLevel", "INFO"),
            "AWS_EXECUTION_ENV": "AWS_Lambda_" + glob.get("Runtime", "provided.al2023"),
        })
        return env


# --- the local issuer, the custom resource's ResponseURL, the Runtime API proxy ------------------

def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Issuer:
    def __init__(self, url):
        self.url = url
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        n = self.key.public_key().public_numbers().n
        self.jwks = {"keys": [{"kty": "RSA", "kid": "deploy-check", "alg": "RS256", "use": "sig",
                               "n": b64url(n.to_bytes((n.bit_length() + 7) // 8, "big")),
                               "e": "AQAB"}]}
        self.fetches = 0

    def token(self, sub, aud, key=None):
        head = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "deploy-check"}).encode())
        body = b64url(json.dumps({"sub": sub, "iss": self.url, "aud": aud,
                                  "exp": int(time.time()) + 600}).encode())
        sig = (key or self.key).sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{head}.{body}.{b64url(sig)}"


class Proxy(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, runtime_port, issuer_path):
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.runtime_port = runtime_port
        self.issuer_path = issuer_path
        self.issuer = None
        self.first_poll = {}
        self.cfn_responses = []
        self.lock = threading.Lock()


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle and delayed ACKs add 40 ms.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def _send(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        if self.path == f"{self.server.issuer_path}/.well-known/jwks.json":
            self.server.issuer.fetches += 1
            return self._send(200, json.dumps(self.server.issuer.jwks).encode(),
                              [("content-type", "application/json")])
        if self.path == f"{self.server.issuer_path}/.well-known/openid-configuration":
            return self._send(404, b"")
        if self.path.endswith("/runtime/invocation/next"):
            function = self.path.split("/")[2]  # /.rt/<function>/2018-06-01/...
            with self.server.lock:
                self.server.first_poll.setdefault(function, time.perf_counter())
        self._forward(b"")

    def do_POST(self):
        self._forward(self._body())

    def do_PUT(self):
        if self.path.startswith("/cfn-response"):
            self.server.cfn_responses.append(json.loads(self._body()))
            return self._send(200, b"")
        self._forward(self._body())

    def _forward(self, body):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.runtime_port, timeout=None)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
        except (ConnectionError, http.client.HTTPException):
            return  # the Runtime API or the function went away (the check is ending)
        finally:
            conn.close()
        self._send(r.status, data, [(k, v) for k, v in r.getheaders()
                                    if k.lower() not in ("content-length", "transfer-encoding",
                                                         "connection")])


# --- running and invoking -----------------------------------------------------------------------

def invoke(port, function, payload, timeout=60):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/2015-03-31/functions/{function}/invocations",
        data=json.dumps(payload).encode(), method="POST",
        headers={"content-type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            out = r.read()
    except urllib.error.HTTPError as e:
        fail(f"invoking {function}: HTTP {e.code}: {e.read()[:500]!r}")
    ms = (time.perf_counter() - t0) * 1000
    try:
        return json.loads(out), ms
    except json.JSONDecodeError:
        fail(f"{function} answered something that is not JSON: {out[:300]!r}")


def fixture(path, **subst):
    text = (ROOT / path).read_text()
    for k, v in subst.items():
        text = text.replace(k, v)
    return json.loads(text)


def main():
    bin_dir = Path(sys.argv[1])
    arch = sys.argv[2]
    runner = sys.argv[3:]  # qemu-aarch64 for arm64 binaries
    endpoint, region = os.environ["AWS_ENDPOINT_URL"], os.environ.get("AWS_REGION", "us-east-1")
    admin_url = urllib.parse.urlparse(os.environ["DATABASE_URL"])
    work = ROOT / ".dev" / f"deploy-check-{arch}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    # An empty database: the migrate function's custom resource event creates the schema.
    db = f"collab_deploy_check_{os.getpid()}"
    psql = ["psql", os.environ["DATABASE_URL"], "-qAtc"]
    os.environ["PGOPTIONS"] = "--client-min-messages=warning"
    subprocess.run(psql + [f"DROP DATABASE IF EXISTS {db}"], check=True)
    subprocess.run(psql + [f"CREATE DATABASE {db}"], check=True)

    aws = dict(endpoint_url=endpoint, region_name=region)
    sm = boto3.client("secretsmanager", **aws)
    tag = secrets.token_hex(4)
    admin_secret = sm.create_secret(
        Name=f"deploy-check/admin-{tag}",
        SecretString=json.dumps({"username": admin_url.username or "postgres",
                                 "password": admin_url.password or "local"}))["ARN"]
    app_secret = sm.create_secret(
        Name=f"deploy-check/app-{tag}",
        SecretString=json.dumps({"username": "collab_deploy_check",
                                 "password": secrets.token_hex(16)}))["ARN"]
    topic = boto3.client("sns", **aws).create_topic(Name="collab-ops")["TopicArn"]  # the fixtures' topic

    runtime_port = free_port()
    proxy = Proxy(runtime_port, "/issuer")
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    proxy_base = f"http://127.0.0.1:{proxy.server_address[1]}"
    issuer = Issuer(proxy_base + "/issuer")
    proxy.issuer = issuer

    # The resources the functions' environment names, as they exist here.
    local = {
        "DbProxy.Endpoint": admin_url.hostname or "127.0.0.1",
        "AppDbSecret": app_secret,
        "DbSecret": admin_secret,
        "OpsTopic": topic,
        "Condition:CreateTopic": True,
        "WebSocketApi": "local-websocket-api",  # $connect posts nothing; Sub gives an https URL
        "AWS::Region": region,
        "AWS::URLSuffix": "amazonaws.com",
        "JwtIssuer": issuer.url,  # the template asks for https; the local issuer speaks http
        "JwtAudience": "collab",
    }
    # Where this machine differs from the VPC the template deploys into.
    overrides = {
        "DB_PORT": str(admin_url.port or 5432),
        "DB_NAME": db,
        "DB_SSLMODE": "disable",  # the local server has no certificate; RDS Proxy requires TLS
        "AWS_ENDPOINT_URL": endpoint,  # moto
        "AWS_REGION": region,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        "PATH": os.environ["PATH"],
    }
    template = Template(ROOT / "template.yaml", local)

    watch = subprocess.Popen(
        ["cargo", "lambda", "watch", "--only-lambda-apis", "--invoke-address", "127.0.0.1",
         "--invoke-port", str(runtime_port)],
        cwd=ROOT, stdout=open(work / "watch.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    procs = {}
    results = {}
    try:
        deadline = time.time() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", runtime_port), timeout=1).close()
                break
            except OSError:
                if watch.poll() is not None or time.time() > deadline:
                    fail(f"cargo lambda watch did not start: {(work / 'watch.log').read_text()[-2000:]}")
                time.sleep(0.2)

        def start(resource):
            name = FUNCTIONS[resource]
            env = {**template.environment(resource), **overrides,
                   "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{proxy.server_address[1]}/.rt/{name}"}
            (work / f"{name}.env").write_text(
                "".join(f"{k}={v}\n" for k, v in sorted(env.items()) if "SECRET_ACCESS" not in k))
            out = open(work / f"{name}.log", "w")
            t0 = time.perf_counter()
            procs[name] = (subprocess.Popen(runner + [str(bin_dir / name)], env=env, stdout=out,
                                            stderr=subprocess.STDOUT), out)
            while name not in proxy.first_poll:
                if procs[name][0].poll() is not None:
                    fail(f"{name} exited during init: {(work / f'{name}.log').read_text()[-3000:]}")
                if time.perf_counter() - t0 > 60:
                    fail(f"{name} did not ask for an event within 60 s")
                time.sleep(0.0005)
            init = (proxy.first_poll[name] - t0) * 1000
            results[name] = {"size_bytes": (bin_dir / name).stat().st_size, "init_ms": init,
                             "invocations": []}
            log(f"{name}: ready {init:.1f} ms after its process started")
            return name

        def timed(name, label, payload, check, warm=WARM):
            out, first = invoke(runtime_port, name, payload)
            check(out)
            times = []
            for _ in range(warm):
                again, ms = invoke(runtime_port, name, payload)
                check(again)
                times.append(ms)
            row = {"event": label, "first_ms": first,
                   "warm_median_ms": statistics.median(times) if times else None}
            results[name]["invocations"].append(row)
            log(f"{name} {label}: first {first:.1f} ms, warm median {row['warm_median_ms']:.1f} ms")
            return out

        def http_status(want):
            def check(out):
                if out.get("statusCode") != want:
                    fail(f"expected HTTP {want}, got {json.dumps(out)[:600]}")
            return check

        # migrate: the custom resource's Create; exactly one run (it is not idempotent to time).
        start("MigrateFunction")
        cfn = fixture("events/cfn/create.json")
        cfn["ResponseURL"] = f"{proxy_base}/cfn-response"
        out, first = invoke(runtime_port, "migrate", cfn, timeout=300)
        if len(proxy.cfn_responses) != 1 or proxy.cfn_responses[0].get("Status") != "SUCCESS":
            fail(f"the custom resource response was {proxy.cfn_responses}, answer {out}")
        data = proxy.cfn_responses[0].get("Data", {})
        log(f"migrate: custom resource SUCCESS {data}")
        results["migrate"]["invocations"].append(
            {"event": "cfn Create (migrations on an empty database)", "first_ms": first,
             "warm_median_ms": None})
        update = fixture("events/cfn/update.json")
        update["ResponseURL"] = f"{proxy_base}/cfn-response"
        timed("migrate", "cfn Update (schema current)", update,
              lambda _o: proxy.cfn_responses[-1]["Status"] == "SUCCESS" or fail("Update failed"),
              warm=5)

        # api: the schema is migrated now.
        start("ApiFunction")

        def healthy(out):
            http_status(200)(out)
            body = json.loads(out["body"])
            if body.get("status") != "ok" or body.get("schema_version") != body.get("schema_needed"):
                fail(f"health says {body}")
        timed("api", "GET /health", fixture("events/api/health.json"), healthy)
        created = timed("api", "POST /documents", fixture("events/api/create_document.json"),
                        http_status(201))
        document = json.loads(created["body"])["id"]

        # integrate: an SNS delivery of another replica's ops, and the scheduled sweep.
        start("IntegrateFunction")

        def integrated(out):
            if "integrated" not in out or out.get("batchItemFailures") != []:
                fail(f"integrate answered {out}")
        first_delivery = timed("integrate", "SQS delivery (events/sqs/ops.json)",
                               fixture("events/sqs/ops.json"), integrated)
        if first_delivery["integrated"] != 1:
            fail(f"the first delivery integrated {first_delivery}")
        timed("integrate", "scheduled sweep", fixture("events/schedule/sweep.json"),
              lambda o: isinstance(o, dict) or fail(f"sweep answered {o}"))

        # realtime: $connect with the issuer's token for the document's owner.
        start("RealtimeFunction")
        token = issuer.token("alice", "collab")

        def connected(out):
            http_status(200)(out)
            proto = {k.lower(): v for k, v in (out.get("headers") or {}).items()}
            if proto.get("sec-websocket-protocol") != token:
                fail(f"$connect did not echo the token as the subprotocol: {out}")
        timed("realtime", "$connect (RS256 token, JWKS fetched)",
              fixture("events/ws/connect.json", TOKEN=token, DOCUMENT=document), connected)
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        timed("realtime", "$connect with a forged token",
              fixture("events/ws/connect.json", TOKEN=issuer.token("alice", "collab", other),
                      DOCUMENT=document), http_status(401), warm=3)
        if issuer.fetches < 1:
            fail("the realtime function never fetched the issuer's keys")

        # Every line a function wrote is JSON (LogFormat JSON), and none panicked.
        for name, (p, out) in procs.items():
            if p.poll() is not None:
                fail(f"{name} exited: {(work / f'{name}.log').read_text()[-2000:]}")
        for name, (p, out) in procs.items():
            p.terminate()
            p.wait(timeout=10)
            out.close()
            lines = (work / f"{name}.log").read_text().splitlines()
            for line in lines:
                try:
                    json.loads(line)
                except json.JSONDecodeError:
                    fail(f"{name} wrote a line that is not JSON: {line[:300]}")
                if "panicked" in line:
                    fail(f"{name} panicked: {line[:300]}")
            results[name]["log_lines"] = len(lines)
    finally:
        for p, out in procs.values():
            if p.poll() is None:
                p.kill()
        os.killpg(watch.pid, 15)
        watch.wait(timeout=10)
        subprocess.run(psql + [f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"], check=False)
        subprocess.run(psql + ["DROP ROLE IF EXISTS collab_deploy_check"], check=False)

    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\n{arch}{' (under ' + runner[0] + ')' if runner else ''}:")
    print("| function | bootstrap | init | event | first | warm (median of later) |")
    print("|---|---:|---:|---|---:|---:|")
    for name, r in results.items():
        for i, inv in enumerate(r["invocations"]):
            warm = f"{inv['warm_median_ms']:.1f} ms" if inv["warm_median_ms"] is not None else "-"
            head = (f"| {name} | {r['size_bytes'] / 1e6:.1f} MB | {r['init_ms']:.1f} ms"
                    if i == 0 else "| | |")
            print(f"{head} | {inv['event']} | {inv['first_ms']:.1f} ms | {warm} |")
    log(f"all functions started and answered; details in {work}")


if __name__ == "__main__":
    main()
