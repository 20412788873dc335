# services.podspawn: the end state of the .deb/.rpm, declared. See nixos-module/README.md.
#
# The units and tmpfiles rules are read from ../systemd (the files the packages install), so
# NixOS and the packages cannot drift apart; only ExecStart's binary path, the cleanup interval
# and wantedBy (NixOS ignores [Install]) are set here.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.podspawn;

  inherit (lib) mkOption mkIf mkMerge types;

  modes = [ "grace-period" "destroy-on-disconnect" "named" "persistent" "ttl" ];
  reservedNames = [ "root" "nobody" "podspawn" "podspawn-users" ];

  # sshd refuses an AuthorizedKeysCommand whose path has a group-writable component, which
  # /nix/store is (root:nixbld 1775). Like nixpkgs' google_oslogin and sssd modules, give sshd a
  # root-owned 0755 copy in /etc that execs the store binary. ForceCommand uses it too.
  wrapper = "/etc/podspawn/bin/podspawn";
  exe = "${cfg.package}/bin/podspawn";

  # The same block as systemd/sshd/10-podspawn.conf, with the wrapper's path.
  matchBlock = ''
    Match Group podspawn-users
        AuthorizedKeysCommand ${wrapper} auth-keys %u %t %k
        AuthorizedKeysCommandUser podspawn
        AuthorizedKeysFile none
        ForceCommand exec ${wrapper} spawn
        AuthenticationMethods publickey
        PubkeyAuthentication yes
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        GSSAPIAuthentication no
        HostbasedAuthentication no
        PermitUserRC no
        AllowStreamLocalForwarding no
        AllowTcpForwarding no
        X11Forwarding no
        PermitTunnel no
        AcceptEnv PODSPAWN_PROJECT LANG LANGUAGE LC_*
  '';

  # TCP forwarding for podspawn users (the packages' 09-podspawn-forwarding.conf, written by
  # `podspawn server-setup --forwarding`): sshd serves -L/-R/-D from its own process, so forwards
  # are safe only where pam_podspawn.so has moved the connection into the user's container's
  # network namespace. NixOS declares sshd's PAM stack, so the module knows: "auto" means on
  # wherever sshd uses PAM (then the module is in sshd's session stack), "on" asserts that.
  usePAM = config.services.openssh.settings.UsePAM or true;
  forwarding = cfg.portForwarding == "on" || (cfg.portForwarding == "auto" && usePAM);
  pamModule = "${cfg.package}/lib/security/pam_podspawn.so";
  # Before the Match block above: for a member, the first value sshd reads wins. The same block
  # as systemd/sshd/09-podspawn-forwarding.conf (what server-setup writes for the packages).
  forwardingBlock = ''
    Match Group podspawn-users
        AllowTcpForwarding yes
        GatewayPorts no
  '';

  # --- systemd/ files -> NixOS options -------------------------------------------------------
  contentLines = file: builtins.filter
    (l: l != "" && !(lib.hasPrefix "#" l) && !(lib.hasPrefix ";" l))
    (map lib.trim (lib.splitString "\n" (builtins.readFile file)));

  # "[Section]" / "Key=Value" lines -> { Section = { Key = [ values in order ]; }; }
  parseUnit = file:
    let
      step = acc: l:
        let
          sec = builtins.match "\\[([A-Za-z]+)]" l;
          kv = builtins.match "([A-Za-z0-9]+)=(.*)" l;
          s = acc.section;
          old = acc.sections.${s} or { };
          k = builtins.elemAt kv 0;
        in
        if sec != null then acc // { section = builtins.head sec; }
        else if kv != null && s != "" then
          acc // { sections = acc.sections // { ${s} = old // { ${k} = (old.${k} or [ ]) ++ [ (builtins.elemAt kv 1) ]; }; }; }
        else throw "${toString file}: cannot read the line `${l}'";
    in
    (builtins.foldl' step { section = ""; sections = { }; } (contentLines file)).sections;

  one = values: if builtins.length values == 1 then builtins.head values else values;

  # A unit file of ../systemd as NixOS unit options. `kind` is service, socket or timer;
  # `edit` rewrites values of the kind's section (e.g. the cleanup interval).
  unitFrom = kind: file: edit:
    let
      sections = parseUnit file;
      section = { service = "Service"; socket = "Socket"; timer = "Timer"; }.${kind};
      unknown = builtins.filter (s: !(builtins.elem s [ "Unit" section "Install" ])) (builtins.attrNames sections);
      unit = sections.Unit or { };
      values = builtins.mapAttrs
        (_: vs: one (map (v: builtins.replaceStrings [ "/usr/bin/podspawn" ] [ exe ] v) vs))
        (sections.${section} or { });
    in
    if unknown != [ ] then throw "${toString file}: section [${builtins.head unknown}] has no NixOS mapping"
    else {
      description = builtins.head unit.Description;
      unitConfig = builtins.mapAttrs (_: one) (builtins.removeAttrs unit [ "Description" ]);
      "${kind}Config" = values // edit values;
    };

  unitsDir = ../systemd;

  # --- configuration files --------------------------------------------------------------------
  settingsFormat = pkgs.formats.yaml { };

  # JSON is YAML; podspawn's own parser checks it at build time, so a setting it rejects fails
  # the build with podspawn's message (file, key and what is accepted).
  configFile = pkgs.runCommand "podspawn-config.yaml"
    {
      settingsJson = pkgs.writeText "podspawn-config.json" (builtins.toJSON cfg.settings);
    } ''
    ${exe} config validate "$settingsJson"
    cp "$settingsJson" "$out"
  '';

  overrides = u: lib.filterAttrs (_: v: v != null && v != { }) {
    inherit (u) image cpus memory shell mode env;
  };

  setting = path: default: lib.attrByPath path default cfg.settings;

  userModule = { name, ... }: {
    options = {
      keys = mkOption {
        type = types.listOf types.singleLineStr;
        default = [ ];
        example = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbX0U5Hv2rCZ3vK0bd6T4l0e5aYxCgBqoSx1qg6m3aO ${name}@laptop" ];
        description = ''
          Public keys of ${name} (authorized_keys lines without options). They become
          /etc/podspawn/keys/${name} (root:podspawn 0640); `podspawn auth-keys` hands them to sshd
          with the forced command.
        '';
      };
      image = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "ubuntu:24.04";
        description = "Container image for this user (default: settings.defaults.image).";
      };
      cpus = mkOption {
        type = types.nullOr types.number;
        default = null;
        example = 4;
        description = "CPUs for this user's containers (0 = unlimited).";
      };
      memory = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "4g";
        description = "Memory for this user's containers: bytes or a number with k, m, g or t (0 = unlimited).";
      };
      shell = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/bin/zsh";
        description = "Login shell inside the container (absolute path).";
      };
      mode = mkOption {
        type = types.nullOr (types.enum modes);
        default = null;
        description = "Session mode for this user (default: settings.session.mode).";
      };
      env = mkOption {
        type = types.attrsOf types.str;
        default = { };
        description = "Environment variables set in this user's containers.";
      };
    };
  };

  nameOk = n: builtins.match "[a-z_][a-z0-9_-]{0,31}" n != null && !(builtins.elem n reservedNames);
  # Accounts and files only for names podspawn accepts; the others fail an assertion.
  validUsers = lib.filterAttrs (n: _: nameOk n) cfg.users;
  keyOk = k: builtins.match "(ssh-[a-z0-9-]+|ecdsa-sha2-nistp[0-9]+|sk-[a-z0-9-]+@openssh.com) [A-Za-z0-9+/]+=*( .*)?" k != null;
in
{
  options.services.podspawn = {
    enable = lib.mkEnableOption "podspawn: every user in services.podspawn.users gets their own Docker container behind OpenSSH";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./package.nix { } (built from this checkout)";
      description = "The podspawn package.";
    };

    helperPackage = mkOption {
      type = types.nullOr types.package;
      default = pkgs.pkgsStatic.callPackage ./helper.nix { };
      defaultText = lib.literalExpression "pkgs.pkgsStatic.callPackage ./helper.nix { } (built from this checkout)";
      description = ''
        The statically linked podspawn-helper (one file, no store references) that the broker
        bind-mounts read-only into every container at /.podspawn/podspawn-helper: it serves SFTP
        on images without an sftp-server and records the signal that ended a session's command.
        settings.helper.path defaults to its bin/podspawn-helper; the Docker engine sees
        /nix/store, so the store path works as the mount source. `null`: no helper
        (helper.path = ""); SFTP then needs images with their own sftp-server.
      '';
    };

    settings = mkOption {
      inherit (settingsFormat) type;
      default = { };
      example = lib.literalExpression ''
        {
          defaults = { image = "ubuntu:24.04"; cpus = 2; memory = "2g"; };
          session = { mode = "grace-period"; grace_period = "5m"; max_lifetime = "8h"; };
          resources.max_per_user = 3;
        }
      '';
      description = ''
        podspawn's configuration, written to /etc/podspawn/config.yaml (root:podspawn 0640) and
        checked at build time with `podspawn config validate`. `podspawn config default` prints
        every key with its default and meaning. auth.key_dir, users_dir and broker.socket are
        fixed by this module; helper.path defaults to helperPackage's binary.
      '';
    };

    users = mkOption {
      type = types.attrsOf (types.submodule userModule);
      default = { };
      example = lib.literalExpression ''
        {
          alice.keys = [ "ssh-ed25519 AAAA... alice@laptop" ];
          bob = { keys = [ "ssh-ed25519 AAAA... bob@desk" ]; image = "debian:12"; mode = "named"; };
        }
      '';
      description = ''
        podspawn users. Each gets a host account (group podspawn-users, shell /bin/sh, home
        /home/<name>, password field `*`: key login only), a key file and, when any per-user
        option is set, /etc/podspawn/users/<name>.yaml. This replaces `podspawn add-user` and
        `remove-user`, which refuse to run on NixOS.
      '';
    };

    cleanup = {
      mode = mkOption {
        type = types.enum [ "daemon" "timer" ];
        default = "daemon";
        description = ''
          `daemon`: podspawn-cleanup.service (Type=notify with a watchdog) runs a pass every
          `interval`. `timer`: podspawn-cleanup.timer starts one pass every `interval`.
        '';
      };
      interval = mkOption {
        type = types.strMatching "([0-9]+(ms|s|m|h|d))+";
        default = "60s";
        example = "5m";
        description = "Time between cleanup passes.";
      };
    };

    portForwarding = mkOption {
      type = types.enum [ "auto" "on" "off" ];
      default = "auto";
      description = ''
        TCP forwarding (ssh -L, -R, -D; VS Code Remote) for podspawn users, into their own
        container's network namespace through the PAM session module pam_podspawn.so (from
        `package`), which this module then adds to sshd's PAM session stack with control
        `required` (it ignores every other user and service). `auto`: on where sshd uses PAM
        (services.openssh.settings.UsePAM, true by default), off otherwise; `on`: asserts that
        sshd uses PAM; `off`: never. Unix-socket forwarding, X11 and tunnels stay off. Also
        written to config.yaml as security.port_forwarding.
      '';
    };

    metrics.enable = lib.mkEnableOption ''
      the Prometheus endpoint podspawn-metrics.socket (127.0.0.1:9108, one
      podspawn-metrics@.service per request)'';
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = [
        {
          assertion = config.virtualisation.docker.enable;
          message = "services.podspawn needs a Docker engine: set virtualisation.docker.enable = true;";
        }
        {
          assertion = config.services.openssh.enable;
          message = "services.podspawn works behind OpenSSH: services.openssh.enable must not be false.";
        }
        {
          assertion = cfg.portForwarding != "on" || usePAM;
          message = "services.podspawn.portForwarding = \"on\" needs sshd's PAM session stack (pam_podspawn.so moves forwards into the user's container): set services.openssh.settings.UsePAM = true; or portForwarding = \"auto\" or \"off\".";
        }
        {
          assertion = setting [ "security" "port_forwarding" ] cfg.portForwarding == cfg.portForwarding;
          message = "services.podspawn.settings.security.port_forwarding is set from services.podspawn.portForwarding: set that option instead.";
        }
        {
          assertion = builtins.elem (setting [ "session" "mode" ] "grace-period") modes;
          message = "services.podspawn.settings.session.mode = ${builtins.toJSON (setting [ "session" "mode" ] null)} is not a session mode: use one of ${lib.concatStringsSep ", " modes}.";
        }
      ]
      ++ map
        (p: {
          assertion = setting p.path p.value == p.value;
          message = "services.podspawn.settings.${lib.concatStringsSep "." p.path} is fixed to ${p.value} by the NixOS module (the units and /etc files are declared there).";
        }) [
        { path = [ "auth" "key_dir" ]; value = "/etc/podspawn/keys"; }
        { path = [ "users_dir" ]; value = "/etc/podspawn/users"; }
        { path = [ "broker" "socket" ]; value = "/run/podspawn/podspawn.sock"; }
      ]
      ++ lib.concatLists (lib.mapAttrsToList
        (name: u: [
          {
            assertion = nameOk name;
            message = "services.podspawn.users.${builtins.toJSON name}: podspawn does not accept this user name: use 1-32 characters, lowercase letters, digits, '_' or '-', starting with a letter or '_', and not ${lib.concatStringsSep ", " reservedNames}.";
          }
          {
            assertion = u.keys != [ ];
            message = "services.podspawn.users.${name}.keys is empty: give at least one public key (\"ssh-ed25519 AAAA... ${name}@laptop\").";
          }
        ] ++ map
          (k: {
            assertion = keyOk k;
            message = "services.podspawn.users.${name}.keys: ${builtins.toJSON k} is not a public key line (\"TYPE BASE64 [COMMENT]\", no options such as command=).";
          })
          u.keys)
        cfg.users);

      users.groups.podspawn = { };
      users.groups.podspawn-users = { };
      users.users.podspawn = {
        isSystemUser = true;
        group = "podspawn";
        description = "podspawn AuthorizedKeysCommand user";
      };

      environment.etc = {
        "podspawn/bin/podspawn" = {
          mode = "0755";
          user = "root";
          group = "root";
          text = ''
            #!/bin/sh
            exec ${exe} "$@"
          '';
        };
        "podspawn/config.yaml" = {
          source = configFile;
          mode = "0640";
          user = "root";
          group = "podspawn";
        };
      };

      # The helper the packages install at /usr/lib/podspawn/podspawn-helper, from the store.
      services.podspawn.settings.helper.path = lib.mkDefault
        (if cfg.helperPackage == null then "" else "${cfg.helperPackage}/bin/podspawn-helper");

      services.podspawn.settings.security.port_forwarding = lib.mkDefault cfg.portForwarding;

      warnings = lib.optional (cfg.portForwarding == "auto" && !usePAM)
        "services.podspawn.portForwarding = \"auto\": services.openssh.settings.UsePAM is false, so TCP forwarding stays off for podspawn users.";

      services.openssh.enable = lib.mkDefault true;
      # A Match block runs to the end of the file, so it must come after every other line;
      # extraConfig follows the settings, and mkAfter puts this after other modules' extraConfig.
      services.openssh.extraConfig = lib.mkAfter ((lib.optionalString forwarding forwardingBlock) + matchBlock);

      environment.systemPackages = [ cfg.package ];

      systemd.tmpfiles.rules = contentLines (unitsDir + "/tmpfiles.d/podspawn.conf");

      systemd.sockets.podspawn = unitFrom "socket" (unitsDir + "/podspawn.socket") (_: { })
        // { wantedBy = [ "sockets.target" ]; };
      systemd.services.podspawn = unitFrom "service" (unitsDir + "/podspawn.service") (_: { });
    }

    # pam_podspawn.so in sshd's session stack, after nixpkgs' own session rules (their orders are
    # 10000 + 100 per rule): pam_systemd, pam_env and the others run in the host's namespace.
    # `required`: for a podspawn user a failure must end the login (with `optional` the
    # connection would stay in the host's namespace, where forwards reach the host).
    (mkIf forwarding {
      security.pam.services.sshd.rules.session.podspawn = {
        order = 20000;
        control = "required";
        modulePath = pamModule;
        args = [ ];
      };
    })

    # One host account, key file and override file per declared user.
    {
      users.groups = builtins.mapAttrs (_: _: { }) validUsers;
      users.users = builtins.mapAttrs
        (name: _: {
          isNormalUser = true;
          group = name;
          extraGroups = [ "podspawn-users" ];
          home = "/home/${name}";
          createHome = true;
          shell = "/bin/sh";
          hashedPassword = "*";
          description = "podspawn user";
        })
        validUsers;
      environment.etc = lib.mapAttrs'
        (name: u: lib.nameValuePair "podspawn/keys/${name}" {
          text = lib.concatLines u.keys;
          mode = "0640";
          user = "root";
          group = "podspawn";
        })
        validUsers
      // lib.mapAttrs'
        (name: u: lib.nameValuePair "podspawn/users/${name}.yaml" {
          text = builtins.toJSON (overrides u) + "\n";
          mode = "0644";
          user = "root";
          group = "root";
        })
        (lib.filterAttrs (_: u: overrides u != { }) validUsers);
    }

    (mkIf (cfg.cleanup.mode == "daemon") {
      systemd.services.podspawn-cleanup = unitFrom "service" (unitsDir + "/podspawn-cleanup.service")
        (v: { ExecStart = builtins.replaceStrings [ "--interval 60s" ] [ "--interval ${cfg.cleanup.interval}" ] v.ExecStart; })
      // { wantedBy = [ "multi-user.target" ]; };
    })

    (mkIf (cfg.cleanup.mode == "timer") {
      systemd.timers.podspawn-cleanup = unitFrom "timer" (unitsDir + "/podspawn-cleanup.timer")
        (_: { OnUnitActiveSec = cfg.cleanup.interval; })
      // { wantedBy = [ "timers.target" ]; };
      systemd.services.podspawn-cleanup-once = unitFrom "service" (unitsDir + "/podspawn-cleanup-once.service") (_: { });
    })

    (mkIf cfg.metrics.enable {
      systemd.sockets.podspawn-metrics = unitFrom "socket" (unitsDir + "/podspawn-metrics.socket") (_: { })
        // { wantedBy = [ "sockets.target" ]; };
      systemd.services."podspawn-metrics@" = unitFrom "service" (unitsDir + "/podspawn-metrics@.service") (_: { });
    })
  ]);
}
