"""`python -m infra` synthesizes the app into `cdk.out` (or the CLI's $CDK_OUTDIR)."""

from infra.app import main

main()
