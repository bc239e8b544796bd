"""SQL the template hands to AWS, run against a real PostgreSQL: the RDS Proxy's InitQuery.

A statement CloudFormation accepts but PostgreSQL refuses would only fail in AWS, when the proxy
opens its first connection (every request would then fail). Each SQL property is run here through
psql (the simple-query protocol, as the proxy sends it), and the settings it makes are read
back and compared with what the functions expect.
"""

import os
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from deploy_check import CfnLoader  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# What the functions rely on when the proxy sets the session up (the startup `options` do it
# without a proxy; see shared/collab/src/adapters/pg/mod.rs).
EXPECTED = {
    "statement_timeout": "5s",
    "idle_in_transaction_session_timeout": "10s",
    "plan_cache_mode": "force_generic_plan",
}


def main():
    doc = yaml.load((ROOT / "template.yaml").read_text(), Loader=CfnLoader)
    queries = [
        (name, r["Properties"]["ConnectionPoolConfigurationInfo"]["InitQuery"])
        for name, r in doc["Resources"].items()
        if r.get("Type") == "AWS::RDS::DBProxyTargetGroup"
        and "InitQuery" in r.get("Properties", {}).get("ConnectionPoolConfigurationInfo", {})
    ]
    if not queries:
        sys.exit("template.yaml: no RDS Proxy InitQuery found")
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    shows = "; ".join(f"SHOW {k}" for k in EXPECTED)
    for name, query in queries:
        out = subprocess.run(
            ["psql", url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", f"{query}; {shows}"],
            capture_output=True, text=True,
        )
        if out.returncode != 0:
            sys.exit(f"{name}.InitQuery is refused by PostgreSQL: {query!r}\n{out.stderr.strip()}")
        got = dict(zip(EXPECTED, out.stdout.split()))
        if got != EXPECTED:
            sys.exit(f"{name}.InitQuery sets {got}, the functions expect {EXPECTED}")
        print(f"{name}.InitQuery runs on PostgreSQL and sets {got}")


if __name__ == "__main__":
    main()
