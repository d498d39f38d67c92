"""The text-splicing editor: exact output for the layouts users write (no kustomize needed)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from imgforge.gitops.patch import Editor, Keyed, MalformedYaml, UneditableYaml, new_file_text, parse


def edit(text: str):
    yf = parse(Path("f.yaml"), "f.yaml", textwrap.dedent(text).lstrip("\n"))
    return yf, Editor(yf)


def test_scalar_keeps_quotes_comment_and_marker():
    yf, ed = edit("""
        a: 'v1'  # keep me
        b: "80"
        c: x:v1 # {"$imagepolicy": "ns:p"}
        """)
    doc = yf.docs[0]
    ed.set_scalar(doc, "a", "v2")
    ed.set_scalar(doc, "b", "8080")
    ed.set_scalar(doc, "c", "x:v2")
    assert ed.result() == 'a: \'v2\'  # keep me\nb: "8080"\nc: x:v2 # {"$imagepolicy": "ns:p"}\n'


def test_plain_string_that_would_change_type_gets_quoted():
    yf, ed = edit("tag: v1\n")
    ed.set_scalar(yf.docs[0], "tag", "1.10")
    assert ed.result() == 'tag: "1.10"\n'


def test_new_keys_go_after_the_block_not_after_trailing_comments():
    yf, ed = edit("""
        spec:
          containers:
            - name: a
              image: x
          # about what follows
        other: 1
        """)
    ed.merge(yf.docs[0], {"spec": {"securityContext": {"runAsUser": 100}}})
    assert ed.result() == textwrap.dedent("""\
        spec:
          containers:
            - name: a
              image: x
          securityContext:
            runAsUser: 100
          # about what follows
        other: 1
        """)


def test_unindented_sequences_keep_their_style():
    yf, ed = edit("""
        containers:
        - name: a
          image: x
        volumes:
        - name: v
        """)
    assert yf.seq_offset == 0
    ed.merge(
        yf.docs[0], {"containers": Keyed("name", [{"name": "a", "ports": [{"containerPort": 8080}]}, {"name": "b"}])}
    )
    assert ed.result() == textwrap.dedent("""\
        containers:
        - name: a
          image: x
          ports:
          - containerPort: 8080
        - name: b
        volumes:
        - name: v
        """)


def test_merge_keyed_list_matches_on_key_and_changes_only_differences():
    yf, ed = edit("""
        volumeMounts:
          - name: tmp
            mountPath: /tmp
        securityContext:
          runAsUser: 0  # root, for now
          fsGroup: 101
        """)
    ed.merge(
        yf.docs[0],
        {
            "volumeMounts": Keyed("mountPath", [{"mountPath": "/tmp", "name": "tmp"}]),
            "securityContext": {"runAsUser": 100, "runAsNonRoot": True},
        },
    )
    assert ed.result() == textwrap.dedent("""\
        volumeMounts:
          - name: tmp
            mountPath: /tmp
        securityContext:
          runAsUser: 100  # root, for now
          fsGroup: 101
          runAsNonRoot: true
        """)


def test_flow_and_empty_values_are_rewritten_as_blocks():
    yf, ed = edit("""
        securityContext: {}
        capabilities:
          drop: [NET_RAW]
        target: {kind: Deployment}
        """)
    ed.merge(yf.docs[0], {"securityContext": {"runAsUser": 100}, "capabilities": {"drop": ["ALL"]}})
    assert ed.result() == textwrap.dedent("""\
        securityContext:
          runAsUser: 100
        capabilities:
          drop:
            - ALL
        target: {kind: Deployment}
        """)


def test_no_change_means_identical_text():
    yf, ed = edit("a:\n  b: 1\n")
    ed.merge(yf.docs[0], {"a": {"b": 1}})
    assert not ed.changed
    assert ed.result() == yf.text


def test_multi_document_file_edits_the_right_document():
    yf, ed = edit("""
        ---
        kind: Service
        port: 80
        ---
        kind: Deployment
        port: 80
        """)
    ed.set_scalar(yf.docs[1], "port", 8080)
    assert ed.result() == "---\nkind: Service\nport: 80\n---\nkind: Deployment\nport: 8080\n"


def test_block_scalars_are_refused_not_mangled():
    yf, ed = edit("image: |\n  x:v1\n")
    with pytest.raises(UneditableYaml, match=r"f.yaml:1"):
        ed.set_scalar(yf.docs[0], "image", "x:v2")


def test_malformed_yaml_is_one_line_with_file_and_line():
    with pytest.raises(MalformedYaml) as e:
        parse(Path("x.yaml"), "dir/x.yaml", "a: 1\nb: [\n")
    assert str(e.value).startswith("dir/x.yaml: malformed YAML: line ")
    assert "\n" not in str(e.value)


def test_new_file_text_follows_repo_style():
    assert new_file_text({"a": [{"b": 1}]}) == "a:\n  - b: 1\n"
    assert new_file_text({"a": [1]}, seq_offset=0, explicit_start=True) == "---\na:\n- 1\n"


# Commented-out lines at column 0 inside a block imgforge edits (people comment out a list item
# with their editor's toggle, which puts the "#" at column 0). The block goes on past them: the
# result must parse to the intended data and keep every comment line, in order.


def _comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("#")]


def _load(text: str):
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(text)


def test_keys_go_after_a_list_with_a_column_0_commented_out_item_in_its_middle():
    yf, ed = edit("""
        spec:
          containers:
            - name: web
              image: x:v1
        #   - name: old
        #     image: old:v0
            - name: side
              image: y
        other: 1
        """)
    ed.merge(yf.docs[0], {"spec": {"securityContext": {"runAsUser": 100}}})
    out = ed.result()
    assert out == textwrap.dedent("""\
        spec:
          containers:
            - name: web
              image: x:v1
        #   - name: old
        #     image: old:v0
            - name: side
              image: y
          securityContext:
            runAsUser: 100
        other: 1
        """)
    assert _load(out)["spec"]["containers"] == [{"name": "web", "image": "x:v1"}, {"name": "side", "image": "y"}]


def test_item_appended_after_the_last_item_not_inside_a_column_0_comment():
    yf, ed = edit("""
        containers:
          - name: web
            image: x:v1
        #   - name: old
        #     image: old:v0
        volumes:
          - name: tmp
        """)
    ed.merge(
        yf.docs[0],
        {
            "containers": Keyed(
                "name", [{"name": "web", "ports": [{"containerPort": 8080}]}, {"name": "new", "image": "z"}]
            )
        },
    )
    out = ed.result()
    assert out == textwrap.dedent("""\
        containers:
          - name: web
            image: x:v1
            ports:
              - containerPort: 8080
          - name: new
            image: z
        #   - name: old
        #     image: old:v0
        volumes:
          - name: tmp
        """)
    assert [c["name"] for c in _load(out)["containers"]] == ["web", "new"]


def test_a_replaced_list_keeps_its_column_0_commented_out_items():
    yf, ed = edit("""
        securityContext:
          capabilities:
            drop:
              - NET_RAW
        #     - ALL
              - SYS_ADMIN
          runAsUser: 0
        """)
    ed.merge(yf.docs[0], {"securityContext": {"capabilities": {"drop": ["ALL"]}, "runAsUser": 100}})
    out = ed.result()
    assert out == textwrap.dedent("""\
        securityContext:
          capabilities:
            drop:
              - ALL
        #     - ALL
          runAsUser: 100
        """)
    assert _load(out) == {"securityContext": {"capabilities": {"drop": ["ALL"]}, "runAsUser": 100}}


def test_sequence_style_is_read_past_a_column_0_commented_out_first_item():
    yf, ed = edit("""
        containers:
        #- name: old
        - name: web
          image: x:v1
        """)
    assert yf.seq_offset == 0
    ed.merge(yf.docs[0], {"containers": Keyed("name", [{"name": "web", "ports": [{"containerPort": 8080}]}])})
    out = ed.result()
    assert out == "containers:\n#- name: old\n- name: web\n  image: x:v1\n  ports:\n  - containerPort: 8080\n"
    assert _comments(out) == ["#- name: old"]
    assert _load(out)["containers"][0]["ports"] == [{"containerPort": 8080}]


def test_commented_out_key_line_does_not_set_the_sequence_style():
    """A commented-out ``key:`` right above an indented list is not the list's parent key."""
    yf, _ = edit("""
        spec:
          containers:
        # disabled:
            - name: web
        """)
    assert yf.seq_offset == 2
