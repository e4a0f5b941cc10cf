"""Error paths no honest disk produces on demand, made with the fault shim
(tests/shim/faults.c preloaded into chuted): the relay never vouches for
bytes it could not make durable, and an item whose commit failed can
still be finished."""

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import Inbox, Sender, faults_env, new_item_id, wait_until

MiB = 1 << 20


def test_failed_fdatasync_is_not_vouched_for_by_a_later_one(relay_factory):
    # Linux reports a writeback error once: the next fdatasync of the same
    # file returns 0 although the pages were lost. So after one failure no
    # checkpoint of that upload may commit an offset.
    item = new_item_id()
    relay = relay_factory(env=faults_env(fsync=f"{item}:1"))
    box = relay.api().create_inbox()
    snd = box.add_sender()
    data = os.urandom(56 * MiB)           # three checkpoints of 16 MiB, then the end
    assert snd.create(item, len(data)).status == 201
    r = snd.append(item, 0, data, timeout=60)
    assert r.status == 500, r
    assert snd.offset(item) == (0, len(data))
    # The disk is well again: the sender resends from the relay's offset.
    r = snd.append(item, 0, data, timeout=60)
    assert r.status == 204, r
    got = box.download(item)
    assert got.status == 200 and got.body == data


def test_failed_commit_after_the_body_is_final_completes_on_an_empty_patch(relay_factory):
    # The last PATCH's bytes are durable and the body renamed final, then
    # the store's commit fails. The sender asks for the offset (all of it)
    # and sends the nothing that is left: that must commit the item, not
    # reopen a body that is no longer there.
    item = new_item_id()
    relay = relay_factory(env=faults_env(wal_after_rename=item))
    box = relay.api().create_inbox()
    snd = box.add_sender()
    data = os.urandom(300 * 1024)
    assert snd.create(item, len(data)).status == 201
    r = snd.append(item, 0, data)
    assert r.status == 500, r
    assert "cannot store" in r.json["error"]
    assert snd.offset(item) == (len(data), len(data))
    assert item not in box.listed_ids()
    r = snd.append(item, len(data), b"")
    assert r.status == 204, r
    assert int(r.header("Upload-Offset")) == len(data)
    assert item in box.listed_ids()
    got = box.download(item)
    assert got.status == 200 and got.body == data
    # Nothing was left behind to be swept: one body, the final one.
    assert not [p for p in relay.data_files() if p.name.endswith(".part")]


@pytest.mark.parametrize("who", ["sender cancels", "owner acks"])
def test_an_item_retired_while_its_last_patch_commits_is_409_and_leaves_no_body(
        relay_factory, tmp_path, who):
    """PROTOCOL §6.5: a PATCH of an item retired meanwhile gets 409 with
    the state. A cancel or an ack between the last PATCH's offset and its
    body's rename to final took the body away under the rename, and the
    PATCH got 500. The rename is held at a gate while the item retires."""
    gate = tmp_path / "gate"
    relay = relay_factory(env=faults_env(hold_rename=str(gate)))
    box = relay.api().create_inbox()
    snd = box.add_sender()
    data = os.urandom(64 * 1024)
    item = new_item_id()
    assert snd.create(item, len(data)).status == 201
    with ThreadPoolExecutor(1) as ex:
        patch = ex.submit(snd.append, item, 0, data)
        wait_until(lambda: Path(f"{gate}.held").exists() or patch.done(),
                   what="the last PATCH at its rename")
        assert not patch.done(), patch.result()
        r = snd.cancel(item) if who == "sender cancels" else box.ack(item)
        assert r.status == 204, r
        gate.touch()
        r = patch.result(timeout=30)
    want = "cancelled" if who == "sender cancels" else "delivered"
    assert r.status == 409 and r.json["state"] == want, r
    assert snd.status(item).json["state"] == want
    assert not [p for p in relay.data_files() if item in p.name]


def test_a_commit_that_finds_its_body_final_still_syncs_the_folder(relay_factory, tmp_path):
    """A body renamed final whose folder was never synced (the relay was
    killed after the rename, or the folder's fsync failed) is not durable:
    the commit that finds it final must sync the folder before the item
    is committed, and refuse it while that fails. The rename is held, the
    relay killed; at the restart the folder's first two fsyncs fail:
    recovery's, then the sender's empty PATCH's."""
    gate = tmp_path / "gate"
    relay = relay_factory(env=faults_env(hold_rename=str(gate)))
    box = relay.api().create_inbox()
    snd = box.add_sender()
    data = os.urandom(100_000)
    item = new_item_id()
    assert snd.create(item, len(data)).status == 201
    with ThreadPoolExecutor(1) as ex:
        patch = ex.submit(snd.append, item, 0, data)
        wait_until(lambda: Path(f"{gate}.held").exists() or patch.done(),
                   what="the last PATCH at its rename")
        assert not patch.done(), patch.result()
        relay.kill()
        with pytest.raises(OSError):
            patch.result(timeout=30)
    folder = relay.data_dir / "items"
    relay.env.update(faults_env(fsync=f"{folder}:2"))
    del relay.env["CHUTE_FAULT_HOLD_RENAME"]
    relay.start()
    # recovery renamed the body, but could not sync the folder
    assert [p.name for p in folder.iterdir() if item in p.name] == [f"{box.id}.{item}"]
    snd = Sender(Inbox(relay.api(), box.id, box.owner_token), snd.id, snd.token)
    box = snd.inbox
    assert snd.status(item).json["state"] == "uploading"
    assert snd.offset(item) == (len(data), len(data))
    r = snd.append(item, len(data), b"")
    assert r.status == 500, r
    assert snd.status(item).json["state"] == "uploading"
    assert item not in box.listed_ids()
    assert relay.stderr().count(f"fsync {folder}: Input/output error") == 2
    # the folder syncs again: the same empty PATCH commits the item
    r = snd.append(item, len(data), b"")
    assert r.status == 204, r
    assert int(r.header("Upload-Offset")) == len(data)
    assert snd.status(item).json["state"] == "pending"
    got = box.download(item)
    assert got.status == 200 and got.body == data


@pytest.mark.parametrize("who", ["sender cancels", "owner acks", "owner deletes the inbox"])
def test_a_first_patch_of_an_item_retired_before_its_body_exists_leaves_no_body(
        relay_factory, tmp_path, who):
    """A first PATCH reads its item (uploading), then makes the body file.
    A cancel, an ack or the inbox's deletion in between removes a body
    that is not there yet; the PATCH then made one that no row owned, and
    filled it, until the orphan sweep ten minutes later. The file's
    creation is held at a gate while the item retires."""
    gate = tmp_path / "gate"
    relay = relay_factory(env=faults_env(hold_create=str(gate)))
    box = relay.api().create_inbox()
    snd = box.add_sender()
    data = os.urandom(256 * 1024)
    item = new_item_id()
    assert snd.create(item, len(data)).status == 201
    with ThreadPoolExecutor(1) as ex:
        patch = ex.submit(snd.append, item, 0, data)
        wait_until(lambda: Path(f"{gate}.held").exists() or patch.done(),
                   what="the first PATCH making its body")
        assert not patch.done(), patch.result()
        r = {"sender cancels": lambda: snd.cancel(item),
             "owner acks": lambda: box.ack(item),
             "owner deletes the inbox": lambda: box.owner.delete(box.path)}[who]()
        assert r.status == 204, r
        gate.touch()
        r = patch.result(timeout=30)
    if who == "owner deletes the inbox":
        assert r.status == 404, r
    else:
        want = "cancelled" if who == "sender cancels" else "delivered"
        assert r.status == 409 and r.json["state"] == want, r
        assert snd.status(item).json["state"] == want
    assert not [p for p in relay.data_files() if item in p.name]
