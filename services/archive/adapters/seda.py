"""SEDA 2.2 ArchiveTransfer packages: export a selection of records, import a package.

A package is a ZIP with `manifest.xml` (the ArchiveTransfer message) and `content/<n>/<file>`.
Each record is one ArchiveUnit referencing one DataObjectGroup holding one BinaryDataObject
(`MessageDigest algorithm="SHA-512"`, size, format). Our metadata maps onto SEDA as follows,
so an import restores it exactly: title -> Title, description -> Description, document type ->
DocumentType, originating service -> OriginatingSystemId, document date -> CreatedDate,
keywords -> Keyword, retention -> AppraisalRule (Rule = the ISO 8601 duration, StartDate,
FinalAction; our "review" final action, which SEDA lacks, is exported as Keep plus the Tag
`mutualis:final-action=review`), communicability delay -> AccessRule (Rule = duration,
StartDate = document date).
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
import uuid
import zipfile
from datetime import date
from pathlib import Path

from lxml import etree

from archive.adapters.content import stage
from archive.adapters.seda_schemas import validate
from archive.domain import errors
from archive.domain.commands import Actor, Ingest
from archive.domain.model import Record, RecordMetadata, RetentionRule, utcnow
from archive.service_layer.handlers import ArchiveService

NS = "fr:gouv:culture:archivesdefrance:seda:v2.2"
REVIEW_TAG = "mutualis:final-action=review"
MAX_MANIFEST = 64 * 1024 * 1024


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, _q(tag))
    if text is not None:
        element.text = text
    return element


def build_manifest(tenant: str, records: list[Record], message_id: str) -> bytes:
    root = etree.Element(_q("ArchiveTransfer"), nsmap={None: NS})
    _sub(root, "Comment", f"Mutualis archive export of {tenant}")
    _sub(root, "Date", utcnow().replace(microsecond=0).isoformat())
    _sub(root, "MessageIdentifier", message_id)
    _sub(root, "ArchivalAgreement", f"mutualis-{tenant}")
    _sub(root, "CodeListVersions")
    package = _sub(root, "DataObjectPackage")
    for index, record in enumerate(records, start=1):
        group = _sub(package, "DataObjectGroup")
        group.set("id", f"GRP{index}")
        binary = _sub(group, "BinaryDataObject")
        binary.set("id", f"BDO{index}")
        _sub(binary, "DataObjectVersion", "BinaryMaster_1")
        _sub(binary, "Uri", content_path(index, record))
        _sub(binary, "MessageDigest", record.content.sha512).set("algorithm", "SHA-512")
        _sub(binary, "Size", str(record.content.size))
        fmt = _sub(binary, "FormatIdentification")
        _sub(fmt, "FormatLitteral", record.content.format.name)
        _sub(fmt, "MimeType", record.content.format.mime_type)
        info = _sub(binary, "FileInfo")
        _sub(info, "Filename", record.content.filename)
    descriptive = _sub(package, "DescriptiveMetadata")
    for index, record in enumerate(records, start=1):
        _archive_unit(descriptive, index, record)
    management = _sub(package, "ManagementMetadata")
    _sub(management, "OriginatingAgencyIdentifier", tenant)
    agency = _sub(root, "ArchivalAgency")
    _sub(agency, "Identifier", "mutualis-archive")
    transferring = _sub(root, "TransferringAgency")
    _sub(transferring, "Identifier", tenant)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def content_path(index: int, record: Record) -> str:
    safe = "".join(c for c in record.content.filename if c.isalnum() or c in "._-") or "content"
    return f"content/{index}/{safe}"


def _archive_unit(parent: etree._Element, index: int, record: Record) -> None:
    meta = record.metadata
    unit = _sub(parent, "ArchiveUnit")
    unit.set("id", f"AU{index}")
    management = _sub(unit, "Management")
    appraisal = _sub(management, "AppraisalRule")
    _sub(appraisal, "Rule", meta.retention.duration)
    _sub(appraisal, "StartDate", meta.retention.start_date.isoformat())
    final = "Destroy" if meta.retention.final_action == "destroy" else "Keep"
    _sub(appraisal, "FinalAction", final)
    access = _sub(management, "AccessRule")
    _sub(access, "Rule", meta.communicability_delay)
    _sub(access, "StartDate", meta.document_date.isoformat())
    content = _sub(unit, "Content")
    _sub(content, "DescriptionLevel", "Item")
    _sub(content, "Title", meta.title)
    _sub(content, "SystemId", record.record_id)
    _sub(content, "OriginatingSystemId", meta.originating_service)
    if meta.description:
        _sub(content, "Description", meta.description)
    _sub(content, "DocumentType", meta.document_type)
    if meta.retention.final_action == "review":
        _sub(content, "Tag", REVIEW_TAG)
    for word in meta.keywords:
        keyword = _sub(content, "Keyword")
        _sub(keyword, "KeywordContent", word)
    _sub(content, "CreatedDate", meta.document_date.isoformat())
    reference = _sub(unit, "DataObjectReference")
    _sub(reference, "DataObjectGroupReferenceId", f"GRP{index}")


class SedaPackages:
    """Export and import through the service layer, validating against the SEDA 2.2 XSD."""

    def __init__(
        self, service: ArchiveService, xsd_dir: Path, work_dir: Path | None = None
    ) -> None:
        self.service = service
        self.xsd_dir = xsd_dir
        self.work_dir = work_dir

    async def export(
        self, tenant: str, record_ids: list[str] | None, target: Path, actor: Actor
    ) -> list[str]:
        if record_ids is None:
            records = [r async for r in self.service.records.all(tenant) if r.status == "active"]
        else:
            records = []
            for record_id in record_ids:
                record = await self.service.get(tenant, record_id, actor)
                record.ensure_active()
                records.append(record)
        if not records:
            raise errors.InvalidPackage("nothing to export")
        records.sort(key=lambda r: r.record_id)
        message_id = f"mutualis-{tenant}-{uuid.uuid4()}"
        manifest = build_manifest(tenant, records, message_id)
        problems = await asyncio.to_thread(validate, manifest, self.xsd_dir)
        if problems:
            raise errors.InvalidPackage("; ".join(problems[:5]))
        with (
            tempfile.TemporaryDirectory(prefix="seda-", dir=self.work_dir) as tmp,
            zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as package,
        ):
            package.writestr("manifest.xml", manifest)
            for index, record in enumerate(records, start=1):
                part = Path(tmp) / f"{index}.bin"
                with part.open("wb") as out:
                    await self.service.content.write_to(record.content.object_name, out)
                package.write(part, content_path(index, record))
                part.unlink()
        await self.service.journal.append(
            tenant,
            "export",
            details={
                "message_identifier": message_id,
                "records": [r.record_id for r in records],
                "by": actor.subject,
            },
        )
        return [r.record_id for r in records]

    async def import_package(self, tenant: str, path: Path, actor: Actor) -> list[str]:
        try:
            package = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise errors.InvalidPackage("not a ZIP file") from None
        with package:
            info = _member(package, "manifest.xml")
            if info.file_size > MAX_MANIFEST:
                raise errors.InvalidPackage("manifest.xml is too large")
            manifest = package.read(info)
            problems = await asyncio.to_thread(validate, manifest, self.xsd_dir)
            if problems:
                raise errors.InvalidPackage(
                    "manifest.xml is not valid SEDA 2.2: " + "; ".join(problems[:5])
                )
            parser = etree.XMLParser(no_network=True, resolve_entities=False)
            root = etree.fromstring(manifest, parser)
            message_id = root.findtext(_q("MessageIdentifier")) or ""
            objects = _binary_objects(root)
            imported = []
            for unit in root.iter(_q("ArchiveUnit")):
                metadata, group_id = _unit_metadata(unit)
                uri, sha512, size, filename = objects[group_id]
                member = _member(package, uri)
                if member.file_size != size:
                    raise errors.InvalidPackage(
                        f"{uri}: size {member.file_size}, manifest says {size}"
                    )
                with package.open(member) as source:
                    staged = await stage(source, self.work_dir)  # type: ignore[arg-type]
                try:
                    record, _ = await self.service.ingest(
                        Ingest(
                            tenant=tenant,
                            metadata=metadata,
                            filename=filename,
                            source="import",
                            cause=f"{message_id}/{unit.get('id')}",
                            by=actor,
                            declared_sha512=sha512,
                        ),
                        staged,
                    )
                finally:
                    staged.discard()
                imported.append(record.record_id)
        await self.service.journal.append(
            tenant,
            "import",
            details={"message_identifier": message_id, "records": imported, "by": actor.subject},
        )
        return imported


def _member(package: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    if name.startswith("/") or ".." in name.split("/"):
        raise errors.InvalidPackage(f"unsafe path {name!r} in the package")
    try:
        return package.getinfo(name)
    except KeyError:
        raise errors.InvalidPackage(f"{name} is missing from the package") from None


def _binary_objects(root: etree._Element) -> dict[str, tuple[str, str, int, str]]:
    found: dict[str, tuple[str, str, int, str]] = {}
    for group in root.iter(_q("DataObjectGroup")):
        binary = group.find(_q("BinaryDataObject"))
        if binary is None:
            continue
        digest = binary.find(_q("MessageDigest"))
        if digest is None or digest.get("algorithm") not in ("SHA-512", "SHA-256"):
            raise errors.InvalidPackage("every object needs a SHA-512 MessageDigest")
        if digest.get("algorithm") != "SHA-512":
            raise errors.InvalidPackage("only SHA-512 digests are imported")
        found[group.get("id") or ""] = (
            binary.findtext(_q("Uri")) or "",
            (digest.text or "").strip(),
            int(binary.findtext(_q("Size")) or "0"),
            binary.findtext(f"{_q('FileInfo')}/{_q('Filename')}") or "content",
        )
    return found


def _unit_metadata(unit: etree._Element) -> tuple[RecordMetadata, str]:
    content = unit.find(_q("Content"))
    management = unit.find(_q("Management"))
    if content is None or management is None:
        raise errors.InvalidPackage(f"archive unit {unit.get('id')} lacks Content or Management")
    appraisal = management.find(_q("AppraisalRule"))
    access = management.find(_q("AccessRule"))
    if appraisal is None:
        raise errors.InvalidPackage(f"archive unit {unit.get('id')} has no AppraisalRule")
    tags = [t.text for t in content.findall(_q("Tag"))]
    final = appraisal.findtext(_q("FinalAction"))
    final_action = "review" if REVIEW_TAG in tags else ("destroy" if final == "Destroy" else "keep")
    created = content.findtext(_q("CreatedDate")) or ""
    try:
        metadata = RecordMetadata(
            title=content.findtext(_q("Title")) or "",
            originating_service=content.findtext(_q("OriginatingSystemId")) or "import",
            document_type=content.findtext(_q("DocumentType")) or "unknown",
            document_date=date.fromisoformat(created[:10]),
            retention=RetentionRule(
                duration=appraisal.findtext(_q("Rule")) or "",
                final_action=final_action,  # type: ignore[arg-type]
                start_date=date.fromisoformat((appraisal.findtext(_q("StartDate")) or "")[:10]),
            ),
            communicability_delay=(access.findtext(_q("Rule")) if access is not None else None)
            or "P0D",
            keywords=tuple(
                k.findtext(_q("KeywordContent")) or "" for k in content.findall(_q("Keyword"))
            ),
            description=content.findtext(_q("Description")) or "",
        )
    except (ValueError, errors.ArchiveError) as error:
        raise errors.InvalidPackage(f"archive unit {unit.get('id')}: {error}") from None
    group_id = unit.findtext(f"{_q('DataObjectReference')}/{_q('DataObjectGroupReferenceId')}")
    return metadata, group_id or ""


def sha512_file(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as source:
        while chunk := source.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["SedaPackages", "build_manifest", "shutil"]
