# qb — restore Qubes OS backups anywhere.
#   make demo    restore the bundled sample backup, step by step
#   make check   install what is missing, build, run every test, lint man pages
#   make fuzz    run the libFuzzer targets of FuzzTesting/ (FUZZ_SECONDS=60 each,
#                FUZZ_RUNS=10000000 to stop each sooner after that many
#                executions, FUZZ_TARGETS="FuzzTar FuzzHeader" to choose);
#                fails on a crash
#   make check-release   the restore, qb-fs and truncation suites
#                (RELEASE_SUITES) against the release build of the tools,
#                the one users run
#   make check-sanitize   every test again under each of $(SANITIZERS)
#                (default address; SANITIZERS="address thread"), each kind
#                in its own build directory .build/sanitize-KIND, the
#                release suites and the fuzz regression inputs
#                (RELEASE_SANITIZE_SUITES) built with -c release under ASan
#                instead of debug
#   make bench   compare speed and memory with the manual procedure
#                (QB_BENCH_IMAGE_MB=2048 image size; see bench/restore.sh),
#                and bytes read restoring one VM from a file and a pipe
#                (bench/select.sh), qb-fs against debugfs (bench/fs.sh), a
#                VM's files straight from a backup (bench/files.sh: 8 GiB,
#                100,000 files; about 20 min)
#   make fs-soak random ext2/3/4 images (crashed journals, uncommon layouts)
#                made by e2fsprogs, checked against qb-fs for SECONDS=600;
#                prints each failing seed and how to reproduce it
#                (Tests/Fixtures/ext/fs-random.py)
#   make install PREFIX=/usr/local DESTDIR=   (tools, man pages, completions)
#   make dist    dist/qb-VERSION-linux-ARCH.tar.gz: one statically linked
#                multi-call qb, the qb-* links, man pages, completions,
#                README, LICENSE and the notices of what qb links in,
#                SHA256SUMS; runs on glibc >= 2.35 without Swift
#   make deb     dist/qb_VERSION_ARCH.deb, the same program for dpkg
#   make check-dist   build both, then run them as a rescue machine would:
#                the tarball from a scratch directory under env -i, the .deb
#                installed and removed with dpkg (as root)

SWIFT    ?= swift
PREFIX   ?= /usr/local
DESTDIR  ?=
BINDIR    = $(DESTDIR)$(PREFIX)/bin
MANDIR    = $(DESTDIR)$(PREFIX)/share/man
TOOLS     = qb-untar qb-hmac qb-decrypt qb-decompress qb-header qb-restore qb-fs
MANPAGES  = $(wildcard man/*.1 man/*.5 man/*.7)
COMPLETIONS_BASH = $(DESTDIR)$(PREFIX)/share/bash-completion/completions
COMPLETIONS_ZSH  = $(DESTDIR)$(PREFIX)/share/zsh/site-functions
COMPLETIONS_FISH = $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
VERSION  := $(shell cat VERSION)
ARCH     := $(shell uname -m)
SYSLIBDIR ?= /usr/lib/$(ARCH)-linux-gnu
# The release build of make dist and make deb: its own scratch directory,
# the Swift runtime and every C library with a Debian archive linked in
# (packaging/static-libs.sh), ISA-L found through $$ORIGIN/../lib.
DIST_SCRATCH = .build-dist
DIST_QB      = $(DIST_SCRATCH)/release/qb
# The release's copyright file (packaging/notices.sh), for both.
DIST_COPYRIGHT = $(DIST_SCRATCH)/copyright
DIST_TARBALL = dist/qb-$(VERSION)-linux-$(ARCH).tar.gz
DEB          = dist/qb_$(VERSION)_$(shell dpkg --print-architecture 2>/dev/null || echo $(ARCH)).deb

# Build libraries, plus the real programs the interop tests and the
# benchmark compare against.
PACKAGES  = libssl-dev zlib1g-dev libbz2-dev liblzma-dev libzstd-dev libisal-dev libscrypt-kdf-dev \
            openssl scrypt mandoc tar gzip pigz bzip2 pbzip2 xz-utils zstd libarchive-tools pkg-config time python3 \
            e2fsprogs fdisk binutils dpkg-dev patchelf \
            ntfs-3g cryptsetup-bin btrfs-progs xfsprogs dosfstools

.PHONY: all deps build check check-release release-suites-exist check-sanitize check-fresh check-dist test lint-man demo install uninstall clean bench fuzz fs-soak dist deb dist-build

all:
	$(SWIFT) build -c release

# Installs missing Debian packages when run as root; otherwise prints the
# one command that would, and stops.
deps:
	@missing=$$(for p in $(PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing packages; run: sudo apt-get install $$missing"; exit 1; \
	  fi; \
	fi

build: deps
	$(SWIFT) build

test: build
	$(SWIFT) test

lint-man: deps
	mandoc -Tlint -Wwarning $(MANPAGES)

check: deps build test lint-man

# What runs optimised. Users run release builds and the suites above debug
# builds; a use-after-free once lived only in -c release (69016dd). These
# suites run again against the release build of the tools: every fixture
# restored and refused (RestoreToolTests, with V2RestoreTests and
# RefusedPipelineTests), qb-fs on every image kind (FilesystemToolTests),
# the truncation sweep through the tools, the small tools' pipelines
# killed or fed tampered chunks (RestorePipelineTests,
# FailurePropagationTests), a VM's files straight from the backup
# (RestorePassingTests). The other suites check parsing, options and
# messages, and would cost about as much again.
RELEASE_SUITES ?= RestoreToolTests|FilesystemToolTests|TruncationCLITests|RestorePipelineTests|FailurePropagationTests|RestorePassingTests
# Built with -c release under AddressSanitizer, the same suites and the
# library's own fuzz regression inputs and seeds, in process (which is
# where they run optimised). The in-process truncation sweep is left to
# the debug passes: every boundary of every fixture, it is the dearest
# suite under ASan (149 s of the corpus's 417 s, one suite at a time on a
# busy 2-core machine), and the tools' own sweep, TruncationCLITests, is
# here.
RELEASE_SANITIZE_SUITES ?= $(RELEASE_SUITES)|FuzzRegressionTests

# --filter takes any pattern: a suite renamed away would silently leave it.
release-suites-exist:
	@for s in $(subst |, ,$(RELEASE_SUITES) $(RELEASE_SANITIZE_SUITES)); do \
	  grep -rqw "struct $$s" Tests || { echo "no suite $$s in Tests/ (RELEASE_SUITES, RELEASE_SANITIZE_SUITES)"; exit 1; }; \
	done

# The tools are built as `make` and `make install` build them (swift build
# -c release, .build/release, without -enable-testing), and the tool-level
# suites, built as `make check` builds them (debug: after make check,
# nothing is compiled again), run them through QB_TEST_BINARIES
# (Tests/Support). A release build of the tests themselves would compile
# every module again, with -enable-testing, which is not what ships; the
# library runs optimised in process under check-sanitize's release pass.
check-release: deps release-suites-exist
	$(SWIFT) build -c release
	QB_TEST_BINARIES="$$($(SWIFT) build -c release --show-bin-path)" \
	  $(SWIFT) test --filter '$(RELEASE_SUITES)'

# The whole test suite built with a sanitizer, one kind at a time, each in
# its own scratch directory so the normal build is left alone. The CLI tests
# run the tools built the same way. RELEASE_SANITIZE_SUITES are then built
# with -c release -sanitize=address, tools included (with -enable-testing,
# as swift test -c release builds them), so that ASan sees what the
# optimiser does to lifetimes, the build users run: under ASan they run
# there only, not in the debug pass too (the dearest suites: it keeps the
# whole of CI under 30 minutes). Tests/lsan.supp silences the leaks
# LeakSanitizer finds in the toolchain's Foundation and XCTest.
# `undefined` is not offered: swiftc rejects -sanitize=undefined on Linux,
# Swift code traps on overflow and out-of-bounds access by itself, and qb
# compiles no C (the C modules are system headers).
SANITIZERS ?= address
check-sanitize: deps release-suites-exist
	@for kind in $(SANITIZERS); do \
	  skip=; [ $$kind = address ] && skip='$(RELEASE_SANITIZE_SUITES)'; \
	  echo "== swift test --sanitize=$$kind$${skip:+ --skip '$$skip'}"; \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/lsan.supp \
	    $(SWIFT) test --sanitize=$$kind --scratch-path .build/sanitize-$$kind $${skip:+--skip "$$skip"} || exit 1; \
	done
	@echo "== swift test -c release --sanitize=address --filter '$(RELEASE_SANITIZE_SUITES)'"
	LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/lsan.supp \
	  $(SWIFT) test -c release --sanitize=address --scratch-path .build/sanitize-address-release \
	  --filter '$(RELEASE_SANITIZE_SUITES)'

demo: deps
	$(SWIFT) build -c release
	@PATH="$$($(SWIFT) build -c release --show-bin-path):$$PATH" ./demo/run.sh

bench: deps
	$(SWIFT) build -c release
	@PATH="$$($(SWIFT) build -c release --show-bin-path):$$PATH" ./bench/run.sh
	@PATH="$$($(SWIFT) build -c release --show-bin-path):$$PATH" ./bench/restore.sh
	@PATH="$$($(SWIFT) build -c release --show-bin-path):$$PATH" ./bench/select.sh
	@PATH="$$($(SWIFT) build -c release --show-bin-path):$$PATH" ./bench/fs.sh
	@PATH="$$($(SWIFT) build -c release --show-bin-path):$$PATH" ./bench/files.sh

# libFuzzer targets live in a package of their own (FuzzTesting/, which
# depends on this one by path) so that no other build sees fuzzing flags.
# See FuzzTesting/Package.swift for why both sanitizer spellings are given.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
FUZZ_RUNS ?=
fuzz: deps
	cd FuzzTesting && $(SWIFT) build -c release --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address
	FUZZ_RUNS=$(FUZZ_RUNS) FuzzTesting/run-fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Random seeds of Tests/Fixtures/ext/fs-random.py, journal and layout in turn,
# against the debug qb-fs, until SECONDS have passed; exits 1 if a seed failed.
SECONDS ?= 600
fs-soak: build
	python3 Tests/Fixtures/ext/fs-random.py soak --seconds $(SECONDS) --qb-fs "$$($(SWIFT) build --show-bin-path)/qb-fs"

install: all
	install -d $(BINDIR) $(MANDIR)/man1 $(MANDIR)/man5 $(MANDIR)/man7
	bin=$$($(SWIFT) build -c release --show-bin-path); for t in qb $(TOOLS); do install -m 755 $$bin/$$t $(BINDIR)/$$t; done
	for m in $(MANPAGES); do s=$${m##*.}; install -m 644 $$m $(MANDIR)/man$$s/; done
	packaging/completions.sh $(BINDIR) $(COMPLETIONS_BASH) $(COMPLETIONS_ZSH) $(COMPLETIONS_FISH)

uninstall:
	rm -f $(BINDIR)/qb
	for t in $(TOOLS); do rm -f $(BINDIR)/$$t $(COMPLETIONS_BASH)/$$t $(COMPLETIONS_ZSH)/_$$t $(COMPLETIONS_FISH)/$$t.fish; done
	for m in $(MANPAGES); do s=$${m##*.}; rm -f $(MANDIR)/man$$s/$${m##*/}; done

dist-build: deps
	mkdir -p $(DIST_SCRATCH)
	packaging/static-libs.sh $(DIST_SCRATCH) $(SYSLIBDIR)
	PKG_CONFIG_PATH=$(CURDIR)/$(DIST_SCRATCH)/pkgconfig $(SWIFT) build -c release --product qb \
	  --scratch-path $(DIST_SCRATCH) --static-swift-stdlib -Xlinker -rpath -Xlinker '$$ORIGIN/../lib' \
	  -Xlinker -z -Xlinker relro -Xlinker -z -Xlinker now
	packaging/notices.sh $(DIST_QB) $(DIST_SCRATCH) $(SYSLIBDIR) $(SWIFT) > $(DIST_COPYRIGHT).new
	mv $(DIST_COPYRIGHT).new $(DIST_COPYRIGHT)

dist: dist-build
	packaging/dist.sh $(DIST_QB) $(VERSION) $(ARCH) $(SYSLIBDIR) $(DIST_COPYRIGHT) dist

deb: dist-build
	packaging/deb.sh $(DIST_QB) $(VERSION) $(DIST_COPYRIGHT) dist

check-dist: dist deb
	packaging/check-dist.sh $(DIST_TARBALL) $(DEB)
	packaging/check-dist-refusals.sh $(DIST_TARBALL)
	packaging/check-install.sh

clean:
	$(SWIFT) package clean
	rm -rf .build $(DIST_SCRATCH) dist bench-results

# What CI does: a fresh clone of HEAD, then `make check` there.
check-fresh:
	dir=$$(mktemp -d) && git clone -q . "$$dir/qb" && $(MAKE) -C "$$dir/qb" check && rm -rf "$$dir"
