"""The workbench's words in Vietnamese (the default) and English: one table, a key each
(`tests/unit/tracing/test_workbench_i18n.py` checks both languages have every key the
templates and the code use)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

LANGS: Final = ("vi", "en")

# key: (Vietnamese, English)
TEXT: Final[dict[str, tuple[str, str]]] = {
    "app": ("Bàn làm việc truy vết", "Tracer's workbench"),
    "skip": ("Chuyển đến nội dung chính", "Skip to main content"),
    "nav": ("Điều hướng", "Navigation"),
    "nav.trace": ("Truy vết ca bệnh", "Trace a case"),
    "nav.cases": ("Hồ sơ ca bệnh", "Cases"),
    "nav.sites": ("Địa điểm phơi nhiễm", "Exposure sites"),
    "nav.audit": ("Nhật ký truy cập", "Audit log"),
    "nav.public": ("Địa điểm công bố", "Public exposure sites"),
    "nav.api": ("Tài liệu API", "API documentation"),
    "switch": ("English", "Tiếng Việt"),
    "logout": ("Đăng xuất", "Sign out"),
    "footer": (
        "Dữ liệu cá nhân: mọi lượt xem và thay đổi đều được ghi nhật ký. Giờ Việt Nam (UTC+7).",
        "Personal data: every view and change is logged. Vietnam time (UTC+7).",
    ),
    "back": ("Quay lại", "Back"),
    "yes": ("Có", "Yes"),
    "no": ("Không", "No"),
    "save": ("Lưu", "Save"),
    "print": ("In", "Print"),
    "tz": ("giờ Việt Nam", "Vietnam time"),
    "role.tracer": ("truy vết viên", "tracer"),
    "role.supervisor": ("giám sát viên", "supervisor"),
    "role.auditor": ("kiểm tra viên", "auditor"),
    # sign-in
    "login.title": ("Đăng nhập", "Sign in"),
    "login.token": ("Mã truy cập", "Access token"),
    "login.hint": (
        "Mã truy cập do quản trị viên cấp (giống mã dùng cho API).",
        "The access token your administrator gave you (the same as for the API).",
    ),
    "login.submit": ("Đăng nhập", "Sign in"),
    "login.bad_token": ("Mã truy cập không đúng.", "Unknown access token."),
    "login.csrf": (
        "Biểu mẫu đã hết hạn, vui lòng thử lại.",
        "The form expired, please try again.",
    ),
    "login.throttled": (
        "Quá nhiều lần đăng nhập sai; vui lòng đợi vài phút.",
        "Too many failed sign-ins; please wait a few minutes.",
    ),
    # the trace form
    "form.person": ("Mã người (ca bệnh)", "Person id (the case)"),
    "form.from": ("Từ", "From"),
    "form.to": ("Đến", "To"),
    "form.rule": ("Quy tắc", "Rule"),
    "form.depth": ("Cấp", "Depth"),
    "form.params": ("Tham số quy tắc", "Rule parameters"),
    "form.local": (
        "Thời gian theo giờ Việt Nam.",
        "Times are Vietnam time.",
    ),
    "form.submit": ("Truy vết", "Trace"),
    "rule.scan-window": ("Quét trong cửa sổ (PC-COVID)", "Scan window (PC-COVID)"),
    "rule.overlap": ("Cùng có mặt (Bộ Y tế, F1)", "Overlap (Ministry of Health, F1)"),
    "depth.1": ("F1", "F1"),
    "depth.2": ("F1 và F2 (chạy nền)", "F1 and F2 (a background job)"),
    "param.default": ("Theo quy tắc", "The rule's default"),
    "param.window_min": ("Cửa sổ quét (phút)", "Scan window (min)"),
    "param.buffer_min": ("Đệm quanh lượt ghé (phút)", "Buffer around a visit (min)"),
    "param.min_overlap_min": ("Thời gian trùng tối thiểu (phút)", "Minimum overlap (min)"),
    "param.merge_gap_min": ("Gộp lượt quét cách nhau (phút)", "Merge scans within (min)"),
    "param.max_visit_min": ("Lượt ghé dài nhất (phút)", "Longest visit (min)"),
    "param.cap_at_next_scan": (
        "Kết thúc lượt ghé ở lượt quét kế tiếp nơi khác",
        "End a visit at the next scan elsewhere",
    ),
    # the case view
    "trace.title": ("Ca bệnh", "Case"),
    "count.total": ("Tổng số tiếp xúc", "Contacts in all"),
    "count.persons": ("Số người", "Persons"),
    "count.contacts": ("{n} tiếp xúc", "{n} contacts"),
    "count.close": ("{n} gần", "{n} close"),
    "risk.close": ("Tiếp xúc gần", "Close"),
    "risk.casual": ("Tiếp xúc thông thường", "Casual"),
    "export.csv": ("Tải CSV", "Download CSV"),
    "export.xlsx": ("Tải Excel (XLSX)", "Download Excel (XLSX)"),
    "export.sheet": ("Tiếp xúc", "Contacts"),
    "timeline": ("Lịch trình của ca bệnh", "The case's timeline"),
    "timeline.none": (
        "Không có lượt quét nào trong khoảng thời gian này.",
        "No scan in this period.",
    ),
    "visit.from": ("Đến lúc", "Arrived"),
    "visit.to": ("Rời lúc", "Left"),
    "visit.scans": ("Lượt quét", "Scans"),
    "map.caption": (
        "Các địa điểm ca bệnh đã đến (theo tọa độ đăng ký; số là thứ tự lượt ghé).",
        "The premises the case visited (registry coordinates; numbers are visits).",
    ),
    "contacts.by_premises": (
        "Tiếp xúc theo địa điểm và lượt ghé",
        "Contacts by premises and visit",
    ),
    "contacts.visit": ("Lượt ghé của ca bệnh", "The case's visit"),
    "contacts.f2": ("F2 theo người F1", "F2 by their F1 person"),
    "contacts.via": ("Qua F1", "Through F1"),
    "pages": ("Trang", "Pages"),
    "pages.prev": ("Trang trước", "Previous"),
    "pages.next": ("Trang sau", "Next"),
    "pages.of": ("Trang {page}/{pages}", "Page {page} of {pages}"),
    "col.person_id": ("Mã người", "Person id"),
    "col.degree": ("Cấp", "Degree"),
    "col.via_person_id": ("Qua F1", "Through F1"),
    "col.risk": ("Mức nguy cơ", "Risk"),
    "col.status": ("Theo dõi", "Follow-up"),
    "col.confirmed_case": ("Là ca bệnh", "Confirmed case"),
    "col.premises_id": ("Mã địa điểm", "Premises id"),
    "col.premises_name": ("Tên địa điểm", "Premises"),
    "col.district": ("Quận/huyện", "District"),
    "col.category": ("Loại hình", "Category"),
    "col.case_time_from": ("Ca bệnh từ", "Case from"),
    "col.case_time_to": ("Ca bệnh đến", "Case to"),
    "col.contact_time_from": ("Tiếp xúc từ", "Contact from"),
    "col.contact_time_to": ("Tiếp xúc đến", "Contact to"),
    "col.overlap_minutes": ("Trùng (phút)", "Overlap (min)"),
    # follow-up
    "case.record": ("Hồ sơ ca bệnh", "Case record"),
    "case.new": ("Hồ sơ ca bệnh mới", "New case record"),
    "case.confirmed_on": ("Ngày xác nhận", "Confirmed on"),
    "case.notes": ("Ghi chú", "Notes"),
    "case.by": ("Người tạo", "Recorded by"),
    "case.create": ("Tạo hồ sơ", "Create the record"),
    "case.none": (
        "Chưa có hồ sơ: tạo hồ sơ để ghi trạng thái theo dõi từng người tiếp xúc.",
        "No record yet: create one to record each contact's follow-up.",
    ),
    "case.badge": ("Ca bệnh", "Case"),
    "case.elsewhere": ("Người này là một ca bệnh đã xác nhận", "This person is a confirmed case"),
    "cases.list": ("Các ca bệnh", "Cases"),
    "cases.none": ("Chưa có hồ sơ ca bệnh.", "No case records yet."),
    "status.to_call": ("Cần gọi", "To call"),
    "status.called": ("Đã gọi", "Called"),
    "status.not_reachable": ("Không liên lạc được", "Not reachable"),
    "status.quarantined": ("Đã cách ly", "Quarantined"),
    "status.tested_positive": ("Dương tính", "Tested positive"),
    "status.no_case": ("(cần hồ sơ ca bệnh)", "(needs a case record)"),
    # exposure sites
    "sites.propose_col": ("Đề xuất công bố", "Propose"),
    "sites.propose": ("Đề xuất công bố các lượt ghé đã chọn", "Propose the chosen visits"),
    "sites.propose_hint": (
        "Một giám sát viên khác sẽ duyệt trước khi công bố.",
        "Another person, a supervisor, approves before anything is published.",
    ),
    "sites.rules": (
        "Địa điểm chỉ được công bố khi một giám sát viên không phải người đề xuất phê duyệt.",
        "A site is published only when a supervisor other than its proposer approves it.",
    ),
    "sites.proposal": ("Đề xuất", "Proposal"),
    "sites.proposed_by": ("Đề xuất bởi", "Proposed by"),
    "sites.decided_by": ("Quyết định bởi", "Decided by"),
    "sites.case": ("Ca bệnh", "Case"),
    "sites.approve": ("Phê duyệt và công bố", "Approve and publish"),
    "sites.reject": ("Từ chối", "Reject"),
    "sites.withdraw": ("Rút lại", "Withdraw"),
    "sites.waiting": ("Đang chờ người khác duyệt.", "Waiting for someone else to approve."),
    "sites.none": ("Chưa có đề xuất nào.", "No proposals yet."),
    "sites.state.proposed": ("Chờ duyệt", "Awaiting approval"),
    "sites.state.approved": ("Đã công bố", "Published"),
    "sites.state.rejected": ("Bị từ chối", "Rejected"),
    "sites.state.withdrawn": ("Đã rút lại", "Withdrawn"),
    "public.title": ("Địa điểm có nguy cơ phơi nhiễm", "Exposure sites"),
    "public.intro": (
        "Nếu bạn đã có mặt tại một trong các địa điểm dưới đây trong khoảng thời gian nêu,"
        " hãy theo dõi sức khỏe và liên hệ cơ sở y tế gần nhất khi có triệu chứng.",
        "If you were at one of these places during the times shown, watch your health and"
        " call your nearest health centre if you have symptoms.",
    ),
    "public.caption": ("{n} địa điểm (giờ Việt Nam)", "{n} sites (Vietnam time)"),
    "public.from": ("Từ", "From"),
    "public.to": ("Đến", "To"),
    "public.none": ("Hiện không có địa điểm nào.", "No exposure sites at present."),
    "public.json": ("Dữ liệu dạng JSON:", "As JSON:"),
    # depth-2 jobs
    "job.title": ("Truy vết F2 (chạy nền)", "F2 trace (background job)"),
    "job.rows": ("dòng", "rows"),
    "job.cancel": ("Hủy", "Cancel"),
    "job.again": ("Chạy lại", "Run it again"),
    "job.failed": ("Không thành công", "Failed"),
    "job.hint": (
        "Bạn có thể rời trang này; kết quả được giữ đến khi bạn đăng xuất.",
        "You may leave this page; the answer is kept until you sign out.",
    ),
    "job.state.queued": ("Đang chờ", "Queued"),
    "job.state.running": ("Đang chạy", "Running"),
    "job.state.done": ("Hoàn tất", "Done"),
    "job.state.failed": ("Lỗi", "Failed"),
    "job.state.cancelled": ("Đã hủy", "Cancelled"),
    "job.stage.queued": ("chờ kết nối", "waiting for a connection"),
    "job.stage.f1": ("tìm F1", "finding F1 contacts"),
    "job.stage.f2": ("tìm F2", "finding F2 contacts"),
    "job.stage.reading": ("đọc kết quả", "reading the answer"),
    "job.stage.done": ("xong", "finished"),
    # premises
    "premises.title": ("Địa điểm", "Premises"),
    "premises.registry": ("Thông tin đăng ký", "Registry"),
    "premises.address": ("Địa chỉ", "Address"),
    "premises.ward": ("Phường/xã", "Ward"),
    "premises.agency": ("Cơ quan quản lý", "Agency"),
    "premises.coords": ("Tọa độ", "Coordinates"),
    "premises.unknown": ("Không có trong danh mục địa điểm.", "Not in the premises registry."),
    "premises.map": ("Bản đồ các địa điểm của ca bệnh", "Map of the case's premises"),
    "premises.hours": ("Lượt quét theo giờ", "Scans per hour"),
    "premises.hours_table": ("Bảng lượt quét theo giờ", "Scans per hour as a table"),
    "premises.hour": ("Giờ", "Hour"),
    "premises.peak": ("Cao nhất: {n} lượt quét một giờ", "Busiest hour: {n} scans"),
    "premises.visitors": ("Những người đã quét mã", "Everyone who scanned"),
    # the audit log
    "audit.since": ("Từ lúc", "Since"),
    "audit.actor": ("Người dùng", "User"),
    "audit.show": ("Xem", "Show"),
    "audit.caption": ("{n} dòng", "{n} entries"),
    "audit.at": ("Thời điểm", "When"),
    "audit.channel": ("Kênh", "Channel"),
    "audit.action": ("Thao tác", "Action"),
    "audit.subject": ("Đối tượng", "Subject"),
    "audit.rows": ("Số dòng", "Rows"),
    "audit.ok": ("Thành công", "Succeeded"),
    # the API's documentation
    "api.public": ("Không cần mã truy cập.", "No token needed."),
    "api.param": ("Tham số", "Parameter"),
    "api.in": ("Vị trí", "In"),
    "api.required": ("Bắt buộc", "Required"),
    "api.description": ("Mô tả", "Description"),
    "api.body": ("Nội dung gửi", "Request body"),
    # errors
    "error.title": ("Không thực hiện được", "Could not be done"),
    "error.forbidden": (
        "Vai trò của bạn không được phép làm việc này.",
        "Your role may not do this.",
    ),
    "error.csrf": (
        "Biểu mẫu không hợp lệ hoặc đã hết hạn; hãy tải lại trang.",
        "The form is not valid or expired; reload the page.",
    ),
    "error.failed": ("Truy vấn không thành công; hãy thử lại.", "The query failed; try again."),
    "error.audit_failed": (
        "Không ghi được nhật ký truy cập, nên không hiển thị dữ liệu.",
        "The audit log cannot be written, so nothing is shown.",
    ),
    "error.too_large": (
        "Kết quả quá lớn để hiển thị; hãy thu hẹp khoảng thời gian.",
        "The answer is too large to show; ask for a shorter period.",
    ),
    "error.too_many_jobs": (
        "Bạn có quá nhiều truy vết đang chạy.",
        "You have too many jobs running.",
    ),
    "error.bad_page": ("Số trang không hợp lệ.", "Not a page number."),
    "error.no_job": (
        "Không tìm thấy truy vết này (có thể phiên đã kết thúc).",
        "No such job (it may have ended with your session).",
    ),
    "error.bad_format": ("Định dạng tải về không hợp lệ.", "Unknown download format."),
    "error.bad_question": ("Câu hỏi không hợp lệ.", "The question is not valid."),
    "error.bad_case": ("Hồ sơ ca bệnh không hợp lệ.", "The case record is not valid."),
    "error.bad_status": ("Trạng thái không hợp lệ.", "Not a follow-up status."),
    "error.no_case": ("Không có hồ sơ ca bệnh này.", "No such case record."),
    "error.site_refused": ("Không thực hiện được với địa điểm này.", "Refused."),
    "error.not_found": ("Không tìm thấy.", "Not found."),
    "error.bad_visit": ("Lượt ghé không hợp lệ.", "Not a visit."),
    "error.bad_time": ("Thời gian không hợp lệ.", "Not a time."),
    "error.time": (
        "Thời gian phải có dạng ngày và giờ (giờ Việt Nam).",
        "A time must be a date and a time of day (Vietnam time).",
    ),
    "error.rule": ("Tham số quy tắc không hợp lệ", "A rule parameter is not valid"),
    "error.question": ("Câu hỏi không hợp lệ", "The question is not valid"),
}


def translator(lang: str) -> Callable[..., str]:
    """`t(key, **values)` in `lang`. A key without a text (a rule parameter added since)
    shows its last part rather than failing the page."""
    i = 1 if lang == "en" else 0

    def t(key: str, **values: object) -> str:
        pair = TEXT.get(key)
        text = pair[i] if pair else key.rsplit(".", 1)[-1]
        return text.format(**values) if values else text

    return t
