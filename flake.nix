{
  description = "Push Nix build outputs to binary caches from a durable queue, outside the build loop";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      # f gets the system name too: `pkgs.system` is deprecated in nixpkgs (an evaluation
      # warning since late 2025; pkgs.stdenv.hostPlatform.system is the replacement).
      forAllSystems = f: nixpkgs.lib.genAttrs systems
        (system: f { inherit system; pkgs = nixpkgs.legacyPackages.${system}; });
    in
    {
      overlays.default = final: _prev: {
        nix-push-queue = final.callPackage ./nix/package.nix { };
      };

      # The module alone reads `pkgs.nix-push-queue` (from overlays.default); this wrapper
      # also works without the overlay by building the package with the host's nixpkgs.
      nixosModules.default = { lib, pkgs, ... }: {
        imports = [ ./module.nix ];
        services.nix-push-queue.package =
          lib.mkDefault (pkgs.nix-push-queue or (pkgs.callPackage ./nix/package.nix { }));
      };

      packages = forAllSystems ({ pkgs, ... }: rec {
        nix-push-queue = pkgs.callPackage ./nix/package.nix { };
        default = nix-push-queue;
      });

      apps = forAllSystems ({ system, ... }: {
        default = {
          type = "app";
          program = nixpkgs.lib.getExe self.packages.${system}.default;
          meta.description = "nix-push-queue command line";
        };
      });

      # `nix flake check -L` builds the package (with its unit tests) and runs every NixOS
      # VM test (Linux with KVM; see docs/nixos.md).
      checks = forAllSystems ({ system, pkgs }:
        import ./vm-tests {
          inherit pkgs;
          nixosModule = self.nixosModules.default;
        }
        // { package = self.packages.${system}.default; });

      devShells = forAllSystems ({ system, pkgs }: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${system}.default ];
          packages = with pkgs; [
            nix
            nginx
            openssh
            python3Packages.mypy
            python3Packages.types-pyyaml
            ruff
          ];
        };
      });

      formatter = forAllSystems ({ pkgs, ... }: pkgs.nixpkgs-fmt);
    };
}
