# Another module's sshd line, placed after services.podspawn in the module list by eval.nix (the
# case's own lines come before it), so that whichever order equal-priority lines merge in, one
# other module's line is on each side. MaxStartups is not allowed inside a Match block: `sshd -t`
# fails unless podspawn's Match block comes last.
{ services.openssh.extraConfig = "MaxStartups 10:30:100"; }
