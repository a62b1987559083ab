"""The extension as Slicer's build system and the Extensions Index see it.

- Each module's CMakeLists.txt lists every ``.py`` of the module (its Lib package included) and every
  resource, follows Slicer's scripted-module template, and lists nothing that does not exist.
- The top-level CMakeLists.txt and ``MedAI.json`` (the Extensions Index catalogue entry) agree.
- Icons are 128x128 PNG files.

After adding or removing a module file, ``python Testing/test_extension_structure.py --update``
rewrites the lists of each module's CMakeLists.txt from the files on disk.
- Where CMake and a C compiler are installed, the extension is configured, built and installed
  against a stand-in of Slicer's CMake package, and the installed ``MedAICommonLib`` finds the
  installed ``MedAIResources`` folder beside it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["MedAICommon", "MedAISegmentation", "MedAIRegistration", "MedAIUncertainty"]
PANEL_MODULES = MODULES[1:]
CATALOG_KEYS = {
    "$schema",
    "category",
    "scm_url",
    "scm_revision",
    "scm_type",
    "build_dependencies",
    "build_subdirectory",
    "enabled",
}  # slicer-extension-catalog-entry-schema-v1.0.0
CATALOG_SCHEMA = (
    "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.0.json#"
)


# --- reading CMake ----------------------------------------------------------------------------------


def cmakeCommands(text: str) -> list[tuple[str, list[str]]]:
    """The commands of a CMake file as (lower-case name, arguments), comments removed, quotes kept off."""
    text = re.sub(r"#[^\n]*", "", text)
    commands = []
    for match in re.finditer(r"\b(\w+)\s*\(((?:[^()]|\([^()]*\))*)\)", text, re.S):
        arguments = re.findall(r'"[^"]*"|[^\s"]+', match.group(2))
        commands.append((match.group(1).lower(), [a.strip('"') for a in arguments]))
    return commands


def cmakeVariables(commands) -> dict[str, list[str]]:
    return {args[0]: args[1:] for name, args in commands if name == "set" and args}


def moduleFilesOnDisk(moduleDir: Path) -> tuple[set[str], set[str]]:
    """Every .py of the module outside Testing/, and every file under Resources/ (relative paths)."""
    scripts = {
        p.relative_to(moduleDir).as_posix()
        for p in moduleDir.rglob("*.py")
        if "__pycache__" not in p.parts and p.relative_to(moduleDir).parts[0] != "Testing"
    }
    resources = {
        p.relative_to(moduleDir).as_posix()
        for p in (moduleDir / "Resources").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    return scripts, resources


def moduleCMakeProblems(text: str, moduleDir: Path, moduleName: str) -> list[str]:
    """What is wrong with a module's CMakeLists.txt, compared with the files on disk."""
    commands = cmakeCommands(text)
    variables = cmakeVariables(commands)
    problems = []
    if variables.get("MODULE_NAME") != [moduleName]:
        problems.append(f"set(MODULE_NAME {moduleName}) is missing")

    def expand(values):
        return {v.replace("${MODULE_NAME}", moduleName) for v in values}

    listedScripts = expand(variables.get("MODULE_PYTHON_SCRIPTS", []))
    listedResources = expand(variables.get("MODULE_PYTHON_RESOURCES", []))
    scripts, resources = moduleFilesOnDisk(moduleDir)
    problems += [f"{moduleName}: {f} is not listed in MODULE_PYTHON_SCRIPTS" for f in sorted(scripts - listedScripts)]
    problems += [
        f"{moduleName}: {f} is not listed in MODULE_PYTHON_RESOURCES" for f in sorted(resources - listedResources)
    ]
    problems += [
        f"{moduleName}: {f} is listed but does not exist"
        for f in sorted((listedScripts - scripts) | (listedResources - resources))
    ]
    build = [args for name, args in commands if name == "slicermacrobuildscriptedmodule"]
    expected = [
        "NAME",
        "${MODULE_NAME}",
        "SCRIPTS",
        "${MODULE_PYTHON_SCRIPTS}",
        "RESOURCES",
        "${MODULE_PYTHON_RESOURCES}",
        "WITH_GENERIC_TESTS",
    ]
    if build != [expected]:
        problems.append(f"slicerMacroBuildScriptedModule({' '.join(expected)}) is missing: found {build}")
    flat = " ".join(f"{name}({' '.join(args)})" for name, args in commands)
    for required in (
        "if(BUILD_TESTING)",
        "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)",
        "add_subdirectory(Testing)",
    ):
        if required.lower() not in flat.lower():
            problems.append(f"{moduleName}: {required} is missing")
    return problems


def updatedModuleCMake(text: str, moduleDir: Path, moduleName: str) -> str:
    """``text`` with MODULE_PYTHON_SCRIPTS and MODULE_PYTHON_RESOURCES rewritten from the files on disk."""
    scripts, resources = moduleFilesOnDisk(moduleDir)
    main = f"{moduleName}.py"

    def block(variable, files):
        entries = [
            f.replace(moduleName, "${MODULE_NAME}")
            if f in (main, f"Resources/Icons/{moduleName}.png", f"Resources/UI/{moduleName}.ui")
            else f
            for f in sorted(files, key=lambda f: (f != main, f))
        ]
        return f"set({variable}\n" + "".join(f"  {e}\n" for e in entries) + "  )"

    for variable, files in (("MODULE_PYTHON_SCRIPTS", scripts), ("MODULE_PYTHON_RESOURCES", resources)):
        text = re.sub(rf"set\({variable}\b[^)]*\)", lambda _m, v=variable, f=files: block(v, f), text, count=1)
    return text


def topLevel() -> tuple[list, dict[str, list[str]]]:
    commands = cmakeCommands((ROOT / "CMakeLists.txt").read_text())
    return commands, cmakeVariables(commands)


# --- module CMakeLists.txt ------------------------------------------------------------------------


@pytest.mark.parametrize("moduleName", MODULES)
def test_module_cmake_lists_every_file(moduleName):
    moduleDir = ROOT / moduleName
    assert moduleCMakeProblems((moduleDir / "CMakeLists.txt").read_text(), moduleDir, moduleName) == []


@pytest.mark.parametrize("moduleName", MODULES)
def test_module_has_the_template_layout(moduleName):
    moduleDir = ROOT / moduleName
    assert (moduleDir / f"{moduleName}.py").is_file()
    assert (moduleDir / f"{moduleName}Lib" / "__init__.py").is_file()
    assert (moduleDir / "Resources" / "Icons" / f"{moduleName}.png").is_file()
    assert (moduleDir / "Resources" / "UI" / f"{moduleName}.ui").is_file() == (moduleName in PANEL_MODULES)
    assert cmakeCommands((moduleDir / "Testing" / "CMakeLists.txt").read_text()) == [("add_subdirectory", ["Python"])]
    assert (moduleDir / "Testing" / "Python" / "CMakeLists.txt").is_file()


def test_cmake_check_catches_unlisted_missing_and_template_errors(tmp_path):
    moduleDir = tmp_path / "MedAIDemo"
    (moduleDir / "MedAIDemoLib").mkdir(parents=True)
    (moduleDir / "Resources" / "Icons").mkdir(parents=True)
    for name in (
        "MedAIDemo.py",
        "MedAIDemoLib/__init__.py",
        "MedAIDemoLib/algorithm.py",
        "Resources/Icons/MedAIDemo.png",
    ):
        (moduleDir / name).write_text("")
    good = (ROOT / "MedAIRegistration" / "CMakeLists.txt").read_text()
    good = re.sub(
        r"set\(MODULE_PYTHON_SCRIPTS.*?\)",
        "set(MODULE_PYTHON_SCRIPTS\n  ${MODULE_NAME}.py\n  MedAIDemoLib/__init__.py\n  MedAIDemoLib/algorithm.py\n  )",
        good,
        flags=re.S,
    )
    good = re.sub(
        r"set\(MODULE_PYTHON_RESOURCES.*?\)",
        "set(MODULE_PYTHON_RESOURCES\n  Resources/Icons/${MODULE_NAME}.png\n  )",
        good,
        flags=re.S,
    )
    good = good.replace("set(MODULE_NAME MedAIRegistration)", "set(MODULE_NAME MedAIDemo)")
    assert moduleCMakeProblems(good, moduleDir, "MedAIDemo") == []
    unlisted = good.replace("  MedAIDemoLib/algorithm.py\n", "")
    assert moduleCMakeProblems(unlisted, moduleDir, "MedAIDemo") == [
        "MedAIDemo: MedAIDemoLib/algorithm.py is not listed in MODULE_PYTHON_SCRIPTS"
    ]
    stale = good.replace("  MedAIDemoLib/algorithm.py\n", "  MedAIDemoLib/algorithm.py\n  MedAIDemoLib/gone.py\n")
    assert moduleCMakeProblems(stale, moduleDir, "MedAIDemo") == [
        "MedAIDemo: MedAIDemoLib/gone.py is listed but does not exist"
    ]
    (moduleDir / "Resources" / "Icons" / "extra.png").write_text("")
    assert "MedAIDemo: Resources/Icons/extra.png is not listed in MODULE_PYTHON_RESOURCES" in moduleCMakeProblems(
        good, moduleDir, "MedAIDemo"
    )
    noTests = good.replace("  WITH_GENERIC_TESTS\n", "")
    assert any("slicerMacroBuildScriptedModule" in p for p in moduleCMakeProblems(noTests, moduleDir, "MedAIDemo"))


def test_update_rewrites_the_lists_from_disk(tmp_path):
    moduleDir = tmp_path / "MedAIDemo"
    (moduleDir / "MedAIDemoLib").mkdir(parents=True)
    (moduleDir / "Resources" / "Icons").mkdir(parents=True)
    for name in ("MedAIDemo.py", "MedAIDemoLib/__init__.py", "MedAIDemoLib/new.py", "Resources/Icons/MedAIDemo.png"):
        (moduleDir / name).write_text("")
    stale = (ROOT / "MedAIRegistration" / "CMakeLists.txt").read_text().replace("MedAIRegistration", "MedAIDemo")
    assert moduleCMakeProblems(stale, moduleDir, "MedAIDemo")
    updated = updatedModuleCMake(stale, moduleDir, "MedAIDemo")
    assert moduleCMakeProblems(updated, moduleDir, "MedAIDemo") == []
    assert "  ${MODULE_NAME}.py\n  MedAIDemoLib/__init__.py\n  MedAIDemoLib/new.py\n" in updated
    assert updatedModuleCMake(updated, moduleDir, "MedAIDemo") == updated


# --- top level and catalogue entry ----------------------------------------------------------------


def test_top_level_cmake_follows_the_extension_template():
    commands, variables = topLevel()
    names = [name for name, _ in commands]
    assert names[0] == "cmake_minimum_required"
    assert ("project", ["MedAI"]) in commands
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert variables.get(f"EXTENSION_{key}"), f"EXTENSION_{key} is not set"
    assert variables["EXTENSION_DEPENDS"] == ["PyTorch"]
    assert ("find_package", ["Slicer", "REQUIRED"]) in commands
    includes = [args for name, args in commands if name == "include"]
    assert includes == [["${Slicer_USE_FILE}"], ["${Slicer_EXTENSION_GENERATE_CONFIG}"], ["${Slicer_EXTENSION_CPACK}"]]
    subdirectories = [args[0] for name, args in commands if name == "add_subdirectory"]
    assert subdirectories == MODULES, "one add_subdirectory per module, MedAICommon first"
    order = [names.index(n) for n in ("project", "find_package", "add_subdirectory")]
    assert order == sorted(order)


def test_shared_resources_install_beside_the_scripted_modules():
    _, variables = topLevel()
    assert variables["MedAI_RESOURCES_BUILD_DIR"] == [
        "${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/MedAIResources"
    ]
    assert variables["MedAI_RESOURCES_INSTALL_DIR"] == ["${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/MedAIResources"]
    assert variables["MedAI_RESOURCES_SUBDIRS"] == ["Models", "SampleData"]
    # MedAICommonLib/resources.py looks for <folder holding MedAICommonLib>/MedAIResources.
    resources = (ROOT / "MedAICommon" / "MedAICommonLib" / "resources.py").read_text()
    assert '_here.parent / "MedAIResources"' in resources


def test_catalog_entry_matches_cmake_metadata():
    _, variables = topLevel()
    entry = json.loads((ROOT / "MedAI.json").read_text())
    assert set(entry) <= CATALOG_KEYS
    assert entry["$schema"] == CATALOG_SCHEMA
    assert entry["category"] == variables["EXTENSION_CATEGORY"][0]
    depends = variables["EXTENSION_DEPENDS"]
    assert entry["build_dependencies"] == ([] if depends == ["NA"] else depends)
    homepage = variables["EXTENSION_HOMEPAGE"][0]
    assert entry["scm_url"].removesuffix(".git") == homepage
    assert (
        entry.get("scm_type", "git") == "git" and entry["scm_revision"] and entry.get("build_subdirectory", ".") == "."
    )


def _rawUrlPath(url: str, homepage: str) -> str:
    owner, repository = homepage.removeprefix("https://github.com/").split("/")
    prefix = f"https://raw.githubusercontent.com/{owner}/{repository}/"
    assert url.startswith(prefix), f"{url} is not a file of {homepage}"
    return url.removeprefix(prefix).split("/", 1)[1]  # drop the branch


def test_icon_and_screenshot_urls_name_files_of_the_repository():
    _, variables = topLevel()
    homepage = variables["EXTENSION_HOMEPAGE"][0]
    assert (ROOT / _rawUrlPath(variables["EXTENSION_ICONURL"][0], homepage)).is_file()
    screenshots = [_rawUrlPath(url, homepage) for url in " ".join(variables["EXTENSION_SCREENSHOTURLS"]).split()]
    assert screenshots and all(path.startswith("Resources/Screenshots/") for path in screenshots)
    missing = [path for path in screenshots if not (ROOT / path).is_file()]
    assert missing == [], "screenshots named in EXTENSION_SCREENSHOTURLS must be in the repository"


def test_licence_is_apache_2():
    text = (ROOT / "LICENSE.txt").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text) > 10000


@pytest.mark.parametrize("path", ["Resources/Icons/MedAI.png", *[f"{m}/Resources/Icons/{m}.png" for m in MODULES]])
def test_icons_are_128_pixel_png(path):
    with Image.open(ROOT / path) as image:
        assert image.format == "PNG"
        assert image.size == (128, 128)


# --- configure, build and install against a stand-in of Slicer's CMake package --------------------

STAND_IN = {
    "SlicerConfig.cmake": """
        set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
        set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/SlicerExtensionGenerateConfig.cmake)
        set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/SlicerExtensionCPack.cmake)
        """,
    "UseSlicer.cmake": """
        set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.8/qt-scripted-modules)
        set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.8/qt-scripted-modules)
        # Like Slicer's macro: every listed file must exist; scripts and resources keep their relative paths.
        macro(slicerMacroBuildScriptedModule)
          cmake_parse_arguments(MY "WITH_GENERIC_TESTS" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
          if(MY_UNPARSED_ARGUMENTS OR NOT MY_NAME OR NOT MY_WITH_GENERIC_TESTS)
            message(FATAL_ERROR "slicerMacroBuildScriptedModule: bad arguments ${ARGN}")
          endif()
          foreach(_file IN LISTS MY_SCRIPTS MY_RESOURCES)
            if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${_file})
              message(FATAL_ERROR "slicerMacroBuildScriptedModule(${MY_NAME}) given nonexistent file ${_file}")
            endif()
            get_filename_component(_dir ${_file} DIRECTORY)
            file(COPY ${_file} DESTINATION ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/${_dir})
            install(FILES ${_file} DESTINATION ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/${_dir} COMPONENT RuntimeLibraries)
          endforeach()
          set_property(GLOBAL APPEND PROPERTY STAND_IN_MODULES ${MY_NAME})
        endmacro()
        function(slicer_add_python_unittest)
          cmake_parse_arguments(MY "" "SCRIPT" "" ${ARGN})
          set_property(GLOBAL APPEND PROPERTY STAND_IN_UNITTESTS ${MY_SCRIPT})
        endfunction()
        """,
    "SlicerExtensionGenerateConfig.cmake": """
        # Written once per configure: what the extension declared, for the test to read.
        get_property(_modules GLOBAL PROPERTY STAND_IN_MODULES)
        get_property(_unittests GLOBAL PROPERTY STAND_IN_UNITTESTS)
        file(WRITE ${CMAKE_BINARY_DIR}/modules.txt "${_modules}")
        file(WRITE ${CMAKE_BINARY_DIR}/unittests.txt "${_unittests}")
        file(WRITE ${CMAKE_BINARY_DIR}/extension.txt "")
        foreach(_key HOMEPAGE CATEGORY CONTRIBUTORS DESCRIPTION ICONURL SCREENSHOTURLS DEPENDS)
          if(NOT DEFINED EXTENSION_${_key})
            message(FATAL_ERROR "EXTENSION_${_key} is not set")
          endif()
          file(APPEND ${CMAKE_BINARY_DIR}/extension.txt "${_key}=${EXTENSION_${_key}}\\n")
        endforeach()
        """,
    "SlicerExtensionCPack.cmake": "",
}


def _run(command, cwd):
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("cc") is None, reason="needs cmake and a C compiler")
def test_extension_configures_builds_and_installs(tmp_path):
    standIn = tmp_path / "Slicer"
    standIn.mkdir()
    for name, text in STAND_IN.items():
        (standIn / name).write_text(textwrap.dedent(text))
    build, prefix = tmp_path / "build", tmp_path / "install"
    _run(
        [
            "cmake",
            "-S",
            ROOT,
            "-B",
            build,
            f"-DSlicer_DIR={standIn}",
            "-DBUILD_TESTING=ON",
            f"-DCMAKE_INSTALL_PREFIX={prefix}",
        ],
        tmp_path,
    )
    _run(["cmake", "--build", build], tmp_path)
    _run(["cmake", "--install", build], tmp_path)

    assert (build / "modules.txt").read_text().split(";") == MODULES
    assert (build / "unittests.txt").read_text().split(";") == [f"{m}.py" for m in MODULES]
    assert "DEPENDS=PyTorch" in (build / "extension.txt").read_text().splitlines()

    modulesDir = "lib/Slicer-5.8/qt-scripted-modules"
    shared = [
        p.relative_to(ROOT / "Resources")
        for sub in ("Models", "SampleData")
        for p in (ROOT / "Resources" / sub).rglob("*")
        if p.is_file()
    ]
    for tree in (build, prefix):
        for module in MODULES:
            assert (tree / modulesDir / f"{module}.py").is_file()
        for relative in shared:
            assert (tree / modulesDir / "MedAIResources" / relative).is_file(), f"{relative} missing in {tree}"

    # The installed MedAICommonLib, outside any checkout, must find the installed MedAIResources.
    env = {k: v for k, v in os.environ.items() if k != "MEDAI_RESOURCES"}
    env["PYTHONPATH"] = str(prefix / modulesDir)
    script = "import MedAICommonLib.resources as r; print(r.__file__); print(r.resourcesDir())"
    found = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    lines = found.stdout.split()
    assert lines and Path(lines[0]).is_relative_to(prefix), found.stdout + found.stderr
    if shared:
        assert Path(lines[1]) == prefix / modulesDir / "MedAIResources", found.stdout + found.stderr


if __name__ == "__main__":
    # python Testing/test_extension_structure.py --update: rewrite each module's file lists from disk.
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python Testing/test_extension_structure.py --update")
    for moduleName in MODULES:
        path = ROOT / moduleName / "CMakeLists.txt"
        text = path.read_text()
        updated = updatedModuleCMake(text, ROOT / moduleName, moduleName)
        if updated != text:
            path.write_text(updated)
            print(f"updated {path.relative_to(ROOT)}")
