raise SystemExit("error: declip_plugin.bench is the measuring package; run `declip bench ...` "
                 "(or `python -m declip_plugin bench ...`)")
