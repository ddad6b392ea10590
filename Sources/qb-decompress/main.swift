import QBTools

QBTool.decompress.main()
