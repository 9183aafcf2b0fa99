"""`harness images`: build, list and prune the offline Docker images (harness.backends.docker.images).

harness images build --offline [--force]   build what is missing (warm: well under 1 s)
harness images list                        the images this module made
harness images prune                       keep the newest app and base image, drop the rest
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from harness.backends.docker.images import BuildError, build, list_images, prune, redis_image

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENV = 0, 1, 2, 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness images", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="build the base and app images unless they exist")
    p_build.add_argument("--offline", action="store_true", help="build without a registry (required)")
    p_build.add_argument("--force", action="store_true", help="rebuild even when the tags exist")
    sub.add_parser("list", help="list the images this module built")
    sub.add_parser("prune", help="keep the newest app and base image, remove the others")
    args = parser.parse_args(argv)

    if not shutil.which("docker"):
        print("harness images: the docker CLI is not installed (scripts/ci_docker.sh installs it)", file=sys.stderr)
        return EXIT_ENV
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        print("harness images: no Docker engine answers (scripts/ci_docker.sh starts one)", file=sys.stderr)
        return EXIT_ENV
    try:
        if args.command == "build":
            if not args.offline:
                print(
                    "harness images: only `build --offline` is implemented; with a registry use the "
                    "Dockerfile (docker build -t shap-chaos .) and set HARNESS_SERVICE_IMAGE",
                    file=sys.stderr,
                )
                return EXIT_USAGE
            result = build(force=args.force)
            verb = "built" if result.built else "reused"
            print(f"app   {result.app}\nbase  {result.base}\nredis {redis_image()}")
            steps = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
            print(f"{verb} ({steps})")
        elif args.command == "list":
            for image in list_images():
                print(f"{image['kind']:5} {image['name']:40} {image['id']} {image['size']:>8}  {image['created']}")
        else:
            for name in prune():
                print(f"removed {name}")
    except BuildError as exc:
        print(f"harness images: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
