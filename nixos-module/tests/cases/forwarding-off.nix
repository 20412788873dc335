# portForwarding = "off": no PAM rule, no forwarding block; config.yaml says off.
{ imports = [ ./minimal.nix ]; services.podspawn.portForwarding = "off"; }
