# Evaluates one test configuration (cases/<name>.nix) with the stand-in option tree and prints
# what NixOS would write, as JSON for run.sh. `libFile`: the stand-in lib or nixpkgs' lib/.
# `packageDir`: a directory with bin/podspawn, used as services.podspawn.package.
# `helperDir`: a directory with bin/podspawn-helper, used as services.podspawn.helperPackage
# (with mkDefault, so that cases can set it); "" keeps the module's default (helper.nix through
# the stand-in pkgsStatic), which only evaluates: the stand-in cannot build it.
{ libFile, packageDir, caseFile, withModule ? true, helperDir ? "" }:

let
  lib = import (/. + libFile);
  system = builtins.currentSystem;
  podspawn = { type = "derivation"; name = "podspawn-test"; outPath = packageDir; };
  helper = { type = "derivation"; name = "podspawn-helper-test"; outPath = helperDir; };
  pkgs = import ./standin/pkgs.nix { inherit lib system podspawn; };
  inherit (import ./standin/eval-config.nix {
    inherit lib pkgs;
    modules = [ (/. + caseFile) ]
      ++ lib.optionals withModule [ ../default.nix { services.podspawn.package = podspawn; } ]
      ++ lib.optionals (withModule && helperDir != "") [{ services.podspawn.helperPackage = lib.mkDefault helper; }]
      ++ [ ./cases/late-sshd-line.nix ];
  }) config;
in
{
  # nix-build -A configFile: the module's checked /etc/podspawn/config.yaml
  configFile = config.environment.etc."podspawn/config.yaml".source or null;
  toplevel = config.system.build.toplevel.drvPath;
  sshd = config.system.build.sshdConfig;
  # security.pam.services.<name>'s session rules as "session CONTROL MODULE ARGS" lines
  inherit (config.system.build) pam;
  inherit (config) warnings;
  inherit (config.system.build) units;
  etc = builtins.mapAttrs
    (_: e: {
      inherit (e) enable target mode user group text;
      source = toString e.source;
    })
    config.environment.etc;
  users = builtins.mapAttrs
    (_: u: {
      inherit (u) isNormalUser isSystemUser group extraGroups home createHome hashedPassword description;
      shell = toString u.shell;
    })
    config.users.users;
  groups = builtins.attrNames config.users.groups;
  tmpfiles = config.systemd.tmpfiles.rules;
  packages = map toString config.environment.systemPackages;
  openssh = config.services.openssh.enable;
  settings = config.services.podspawn.settings or { };
  # The module's default helper package, for comparison with settings.helper.path.
  defaultHelper = toString (pkgs.pkgsStatic.callPackage ../helper.nix { });
}
